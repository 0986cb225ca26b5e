//! Allocations per relayed chunk over TLS (VLESS over TLS 1.3), counted by a global allocator
//! that sees every thread, as in `alloc.rs`:
//!
//! - The record layer alone allocates nothing: 100 MiB of records sealed and opened in place.
//! - The whole relay, after warm-up, allocates less than once per 64 chunks (what remains is
//!   the runtime's timers, see `alloc.rs`): records are opened in the pooled read buffer and sealed in a
//!   pooled write buffer. With rustls' own record paths this was at least one per record.
//!
//! The client allocates nothing per chunk either: rustls does its handshake, then it runs the
//! same record codec with the keys rustls hands over.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;

use e2e::{
    assert_far_fewer_allocations_than_chunks, localhost_certificate, read_more, start_engine,
    stream_request_header, tcp_echo,
};
use proto::tls::{self as record, Protection, Suite, Version};
use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ConnectionTrafficSecrets};
use serde_json::json;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const WARMUP: usize = 8 << 20;
const MEASURED: usize = 100 << 20;
const CHUNK: usize = 16 * 1024;

fn protection((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Protection {
    let ConnectionTrafficSecrets::Aes128Gcm { key, iv } = secrets else {
        panic!("the client offered AES-128-GCM only");
    };
    let iv: [u8; 12] = iv.as_ref().try_into().unwrap();
    Protection::new(Version::Tls13, Suite::Aes128Gcm, key.as_ref(), iv, seq).unwrap()
}

#[test]
fn tls_relay_allocates_far_less_than_once_per_chunk_and_the_record_layer_never() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let (cert, key, der) = localhost_certificate("alloc-tls");
    let handle = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "vless",
            "settings": {"users": [{"name": "u", "id": UUID}]},
            "tls": {"certificate": cert, "key": key}}],
    }));
    let echo = tcp_echo();

    // rustls' handshake, then its keys.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).unwrap();
    let provider = CryptoProvider {
        cipher_suites: vec![cipher_suite::TLS13_AES_128_GCM_SHA256],
        ..default_provider()
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.enable_secret_extraction = true;
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut stream = TcpStream::connect(handle.local_addr("in").unwrap()).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).unwrap();
    }
    let secrets = conn.dangerous_extract_secrets().unwrap();
    let mut tx = protection(secrets.tx);
    let mut rx = protection(secrets.rx);

    // The VLESS request in the first record.
    let head = stream_request_header("vless", UUID, echo);
    let mut first = vec![0u8; 512];
    let at = tx.prefix_len();
    first[at..at + head.len()].copy_from_slice(&head);
    let len = tx.seal_in_place(&mut first, head.len(), record::APPLICATION_DATA);
    stream.write_all(&first[..len]).unwrap();

    let barrier = Arc::new(Barrier::new(2));
    let mut writer = stream.try_clone().unwrap();
    let b = Arc::clone(&barrier);
    let sender = thread::spawn(move || {
        let mut rec = Box::new([0u8; 5 + CHUNK + 17]);
        let mut send = |total: usize| {
            for i in 0..total / CHUNK {
                rec[5..5 + CHUNK].fill(i as u8);
                let n = tx.seal_in_place(&mut rec[..], CHUNK, record::APPLICATION_DATA);
                writer.write_all(&rec[..n]).unwrap();
            }
        };
        send(WARMUP);
        b.wait();
        send(MEASURED);
    });

    // Records opened in one reused buffer; session tickets (handshake records) skipped; the
    // VLESS response header (two bytes) in front of the first echoed bytes.
    let mut buf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut skip = 2usize;
    let mut receive = |total: usize| {
        let mut got = 0;
        let mut seen = 0usize;
        while got < total {
            let len = match record::record_len(&buf[start..end], Version::Tls13).unwrap() {
                Some(len) if len <= end - start => len,
                _ => {
                    read_more(&mut stream, &mut buf, &mut start, &mut end);
                    continue;
                }
            };
            let opened = rx.open_in_place(&mut buf[start..start + len]).unwrap();
            if opened.content_type == record::APPLICATION_DATA {
                let data = &buf[start + opened.payload.start..start + opened.payload.end];
                let s = skip.min(data.len());
                skip -= s;
                for &b in &data[s..] {
                    assert_eq!(b, (seen / CHUNK) as u8);
                    seen += 1;
                }
                got += data.len() - s;
            } else {
                assert_eq!(opened.content_type, record::HANDSHAKE, "a session ticket");
            }
            start += len;
        }
        assert_eq!(got, total);
    };
    receive(WARMUP);
    let before = dhat::HeapStats::get();
    barrier.wait();
    receive(MEASURED);
    let after = dhat::HeapStats::get();
    sender.join().unwrap();

    assert_far_fewer_allocations_than_chunks(
        "tls relay",
        after.total_blocks - before.total_blocks,
        2 * (MEASURED / CHUNK) as u64,
    );
    handle.stop(std::time::Duration::from_secs(1));

    // The record layer alone: exactly zero.
    let key = [7u8; 16];
    let mut sealer = Protection::new(Version::Tls13, Suite::Aes128Gcm, &key, [1; 12], 0).unwrap();
    let mut opener = Protection::new(Version::Tls13, Suite::Aes128Gcm, &key, [1; 12], 0).unwrap();
    let mut rec = Box::new([0u8; 5 + CHUNK + 17]);
    let before_codec = dhat::HeapStats::get();
    for i in 0..MEASURED / CHUNK {
        rec[5..5 + CHUNK].fill(i as u8);
        let n = sealer.seal_in_place(&mut rec[..], CHUNK, record::APPLICATION_DATA);
        let opened = opener.open_in_place(&mut rec[..n]).unwrap();
        assert_eq!(opened.payload.len(), CHUNK);
        assert_eq!(rec[5 + CHUNK - 1], i as u8);
    }
    let after = dhat::HeapStats::get();
    assert_eq!(
        after.total_blocks - before_codec.total_blocks,
        0,
        "the record layer allocated per chunk"
    );
}
