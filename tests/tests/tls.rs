//! The engine's TLS record layer (rustls handshake, then our own in-place records) against
//! rustls as the client, which checks every record we send: each TLS version and cipher suite,
//! TLS 1.3 key updates both ways, close_notify, and a tampered record. Real clients (v2ray,
//! trojan-gfw, sing-box, shoes) cover the same path in their own interop tests.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use e2e::{localhost_certificate, start_engine, stream_request_header, tcp_echo};
use proto::tls::{self as record, Protection, Suite, Version};
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, ConnectionTrafficSecrets, StreamOwned, SupportedCipherSuite,
};
use serde_json::json;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";

type Client = StreamOwned<ClientConnection, TcpStream>;

/// An engine with a VLESS inbound over TLS (a certificate for `localhost`), and that
/// certificate.
fn engine() -> (engine::Handle, SocketAddr, CertificateDer<'static>) {
    let (cert, key, der) = localhost_certificate("tls");
    let handle = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "vless",
            "settings": {"users": [{"name": "u", "id": UUID}]},
            "tls": {"certificate": cert, "key": key}}],
    }));
    let addr = handle.local_addr("in").unwrap();
    (handle, addr, CertificateDer::from(der))
}

/// A rustls client connection that offers only `suite` and trusts `cert` for `localhost`.
fn client(cert: &CertificateDer<'static>, suite: SupportedCipherSuite) -> ClientConnection {
    let name = ServerName::try_from("localhost").unwrap();
    ClientConnection::new(Arc::new(client_config(cert, suite)), name).unwrap()
}

/// The configuration of [`client`].
fn client_config(cert: &CertificateDer<'static>, suite: SupportedCipherSuite) -> ClientConfig {
    let version = match suite {
        SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
        SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
    };
    let provider = CryptoProvider {
        cipher_suites: vec![suite],
        ..default_provider()
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A rustls client that offers only `suite`, connected, with the VLESS request for `echo`
/// sent.
fn connect(
    server: SocketAddr,
    cert: &CertificateDer<'static>,
    suite: SupportedCipherSuite,
    echo: SocketAddr,
) -> Client {
    let sock = TcpStream::connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = StreamOwned::new(client(cert, suite), sock);
    tls.write_all(&stream_request_header("vless", UUID, echo))
        .unwrap();
    first_echo(tls)
}

/// Sends one byte and reads it back behind the VLESS response header.
fn first_echo(mut tls: Client) -> Client {
    tls.write_all(b"x").unwrap();
    let mut first = [0u8; 3];
    tls.read_exact(&mut first).unwrap();
    assert_eq!(first, [0, 0, b'x']);
    tls
}

/// Sends `rounds` blocks of 64 KiB (each different) and checks each comes back.
fn exchange(tls: &mut Client, rounds: usize, seed: u8) {
    let mut back = vec![0u8; 64 * 1024];
    for r in 0..rounds {
        let block: Vec<u8> = (0..back.len())
            .map(|i| (i as u8).wrapping_mul(31) ^ seed ^ r as u8)
            .collect();
        tls.write_all(&block).unwrap();
        tls.read_exact(&mut back).unwrap();
        assert!(back == block, "round {r}: the echo differs");
    }
}

#[test]
fn every_version_and_suite_carries_bytes_exactly() {
    let (handle, server, cert) = engine();
    let echo = tcp_echo();
    let suites = [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    for suite in suites {
        let mut tls = connect(server, &cert, suite, echo);
        assert_eq!(tls.conn.negotiated_cipher_suite(), Some(suite));
        exchange(&mut tls, 16, 1);
    }
    handle.stop(Duration::from_secs(1));
}

#[test]
fn tls13_key_updates_keep_both_directions_going() {
    let (handle, server, cert) = engine();
    let echo = tcp_echo();
    for suite in [
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    ] {
        let mut tls = connect(server, &cert, suite, echo);
        for i in 0..3 {
            exchange(&mut tls, 2, i);
            // KeyUpdate(update_requested): the server takes new receive keys, then owes its
            // own KeyUpdate before its next record, which rustls follows.
            tls.conn.refresh_traffic_keys().unwrap();
        }
        exchange(&mut tls, 2, 9);
    }
    handle.stop(Duration::from_secs(1));
}

/// A KeyUpdate that arrives with the client's Finished (and data behind it) is the record
/// layer's to act on: were rustls to take it during the handshake, it would switch its send
/// keys and queue its answer where the handover does not look, and every record we sent
/// after would fail at the client.
#[test]
fn a_key_update_that_comes_with_the_finished_is_answered() {
    let (handle, server, cert) = engine();
    let echo = tcp_echo();
    let mut conn = client(&cert, cipher_suite::TLS13_AES_128_GCM_SHA256);
    let mut sock = TcpStream::connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // ClientHello out, the server's flight in: the client's Finished is then queued, unsent.
    while conn.is_handshaking() {
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        if conn.is_handshaking() {
            conn.read_tls(&mut sock).unwrap();
            conn.process_new_packets().unwrap();
        }
    }
    // Finished, KeyUpdate(update_requested) and the request, in one write.
    conn.refresh_traffic_keys().unwrap();
    conn.writer()
        .write_all(&stream_request_header("vless", UUID, echo))
        .unwrap();
    let mut flight = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut flight).unwrap();
    }
    sock.write_all(&flight).unwrap();
    let mut tls = first_echo(StreamOwned::new(conn, sock));
    exchange(&mut tls, 4, 7);
    handle.stop(Duration::from_secs(1));
}

/// Records that carry nothing are allowed, but a long run of them ends the connection with
/// `unexpected_message`. The client here seals its own records (rustls never sends empty
/// ones) with the keys rustls hands over after its handshake.
#[test]
fn a_run_of_empty_records_is_cut_off() {
    let (handle, server, cert) = engine();
    let echo = tcp_echo();
    let mut config = client_config(&cert, cipher_suite::TLS13_AES_128_GCM_SHA256);
    config.enable_secret_extraction = true;
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(server).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    let secrets = conn.dangerous_extract_secrets().unwrap();
    let keys = |(seq, s): (u64, ConnectionTrafficSecrets)| {
        let ConnectionTrafficSecrets::Aes128Gcm { key, iv } = s else {
            panic!("AES-128-GCM was the only suite offered");
        };
        let iv: [u8; 12] = iv.as_ref().try_into().unwrap();
        Protection::new(Version::Tls13, Suite::Aes128Gcm, key.as_ref(), iv, seq).unwrap()
    };
    let (mut tx, mut rx) = (keys(secrets.tx), keys(secrets.rx));
    let mut reader = sock.try_clone().unwrap();
    let mut send = |data: &[u8]| {
        let mut rec = vec![0u8; tx.prefix_len() + data.len() + tx.suffix_len()];
        rec[tx.prefix_len()..tx.prefix_len() + data.len()].copy_from_slice(data);
        let n = tx.seal_in_place(&mut rec, data.len(), record::APPLICATION_DATA);
        sock.write_all(&rec[..n]).unwrap();
    };
    // What comes back, opened in order (session tickets skipped): data and alerts.
    let mut wire = Vec::new();
    let mut receive = |seen: &mut Vec<u8>| -> Option<Vec<u8>> {
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the alert; data seen: {seen:?}");
        wire.extend_from_slice(&chunk[..n]);
        let mut alert = None;
        while let Ok(Some(len)) = record::record_len(&wire, Version::Tls13) {
            if len > wire.len() {
                break;
            }
            let mut rec: Vec<u8> = wire.drain(..len).collect();
            let opened = rx.open_in_place(&mut rec).unwrap();
            match opened.content_type {
                record::APPLICATION_DATA => seen.extend_from_slice(&rec[opened.payload]),
                record::ALERT => alert = Some(rec[opened.payload].to_vec()),
                _ => {}
            }
        }
        alert
    };
    // A few empty records between data are fine...
    send(&stream_request_header("vless", UUID, echo));
    for _ in 0..8 {
        send(&[]);
    }
    send(b"x");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        assert_eq!(receive(&mut seen), None, "an alert for a few empty records");
    }
    assert_eq!(seen, [0, 0, b'x']);
    // ...a run of them is not.
    for _ in 0..40 {
        send(&[]);
    }
    let alert = loop {
        if let Some(alert) = receive(&mut seen) {
            break alert;
        }
    };
    assert_eq!(alert, [2, 10], "a fatal unexpected_message alert");
    handle.stop(Duration::from_secs(1));
}

#[test]
fn close_notify_is_passed_on_and_answered() {
    let (handle, server, cert) = engine();
    let echo = tcp_echo();
    let mut tls = connect(server, &cert, cipher_suite::TLS13_AES_128_GCM_SHA256, echo);
    exchange(&mut tls, 1, 3);
    // The client's close_notify half-closes the destination; the echo server then closes and
    // the engine ends its side with its own close_notify: rustls reads a clean end (a bare TCP
    // close would be an `UnexpectedEof` error).
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    handle.stop(Duration::from_secs(1));
}

#[test]
fn a_tampered_record_closes_the_connection_and_nothing_else() {
    let (handle, server, cert) = engine();
    let echo = tcp_echo();
    let mut tls = connect(server, &cert, cipher_suite::TLS13_AES_128_GCM_SHA256, echo);
    let mut other = connect(server, &cert, cipher_suite::TLS13_AES_128_GCM_SHA256, echo);
    // A well-formed header over bytes that fail authentication, then an oversize header:
    // each gets the fatal alert rustls would send (which the client reads), then the close.
    let mut bad = vec![23u8, 3, 3, 0, 40];
    bad.extend([0x5a; 40]);
    tls.sock.write_all(&bad).unwrap();
    assert_alert(&mut tls, "BadRecordMac");
    assert_closes(tls.sock);

    let mut oversize = connect(server, &cert, cipher_suite::TLS13_AES_128_GCM_SHA256, echo);
    oversize.sock.write_all(&[23, 3, 3, 0xFF, 0xFF]).unwrap();
    assert_alert(&mut oversize, "RecordOverflow");
    assert_closes(oversize.sock);

    // The other connection goes on.
    exchange(&mut other, 2, 5);
    handle.stop(Duration::from_secs(1));
}

/// The connection ends (within the read timeout) after at most the relay's own closing
/// records: the destination's end and our close_notify, a few dozen bytes.
fn assert_closes(mut sock: TcpStream) {
    let mut buf = [0u8; 1024];
    let mut got = 0;
    loop {
        match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection did not close: {e}"),
        }
    }
    assert!(got < 100, "{got} bytes came back after a bad record");
}

/// The next thing the client reads is the server's fatal alert `name`.
fn assert_alert(tls: &mut Client, name: &str) {
    let mut buf = [0u8; 64];
    match tls.read(&mut buf) {
        Err(e) => assert!(e.to_string().contains(name), "expected {name}, got: {e}"),
        Ok(n) => panic!("expected the {name} alert, read {n} bytes"),
    }
}
