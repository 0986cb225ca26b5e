//! Allocations per relayed chunk, counted by a global allocator that sees every thread (the
//! engine's executors included).
//!
//! - The codec path (seal, open, in place) allocates nothing at all: 100 MiB each way, zero.
//! - The whole relay, after warm-up, allocates less than once per 64 chunks, and what remains
//!   follows time, not traffic: the runtime's preemption timer, re-armed when it fires. Neither
//!   our relay code nor the runtime allocates per chunk, per wait for a socket or per sleep
//!   (`vendor/glommio/PATCHES.md`, patch 9; before it, glommio allocated an io_uring `Source`
//!   for each of those waits, and this bound could not hold).

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use e2e::{assert_far_fewer_allocations_than_chunks, read_more, start_engine, tcp_echo};
use proto::shadowsocks::tcp::{ClientRequest, Opened, HEADROOM};
use proto::shadowsocks::{Key, Method, TAG_LEN};
use proto::TargetAddr;
use serde_json::json;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const PSK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const USER: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const WARMUP: usize = 8 << 20;
const MEASURED: usize = 100 << 20;
const CHUNK: usize = 16 * 1024;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn relaying_allocates_far_less_than_once_per_chunk_and_the_codec_never() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let handle = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "shadowsocks",
            "settings": {"method": "2022-blake3-aes-256-gcm", "psk": PSK, "users": [{"name": "u", "password": USER}]}}],
    }));
    let echo = tcp_echo();
    let m = Method::Blake3Aes256Gcm;
    let key = Key::from_password(m, USER).unwrap();
    let ipsk = Key::from_password(m, PSK).unwrap();
    let salt = [9u8; 32];
    let request = ClientRequest {
        method: m,
        key: &key,
        identity: Some(&ipsk),
        salt: &salt,
        target: &TargetAddr::Ip(echo),
        padding: 16,
    };
    let mut head = vec![0u8; 1024];
    let (n, mut sealer, mut opener) = request.encode(&[], now(), &mut head);
    let mut stream = TcpStream::connect(handle.local_addr("ss").unwrap()).unwrap();
    stream.write_all(&head[..n]).unwrap();

    let barrier = Arc::new(Barrier::new(2));
    let mut writer = stream.try_clone().unwrap();
    let b = Arc::clone(&barrier);
    let sender = thread::spawn(move || {
        let mut buf = vec![0u8; HEADROOM + CHUNK + TAG_LEN];
        let mut send = |total: usize| {
            let mut sent = 0;
            while sent < total {
                let len = CHUNK.min(total - sent);
                buf[HEADROOM..HEADROOM + len].fill((sent / CHUNK) as u8);
                let frame = sealer.seal(&mut buf, HEADROOM..HEADROOM + len, 0);
                writer.write_all(&buf[frame]).unwrap();
                sent += len;
            }
        };
        send(WARMUP);
        b.wait();
        send(MEASURED);
    });

    let mut buf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut receive = |total: usize| {
        let mut got = 0;
        while got < total {
            match opener.open(&mut buf[start..end], now()).unwrap() {
                Opened::Chunk { payload, consumed } => {
                    got += payload.len();
                    start += consumed;
                }
                Opened::NeedMore => read_more(&mut stream, &mut buf, &mut start, &mut end),
            }
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
        "relay",
        after.total_blocks - before.total_blocks,
        2 * (MEASURED / CHUNK) as u64,
    );

    // The codec alone: exactly zero. Stop the engine first, since its idle executors still
    // allocate (timers) and the counter sees every thread.
    handle.stop(std::time::Duration::from_secs(1));
    let request = ClientRequest {
        salt: &[3u8; 32],
        ..request
    };
    let mut wire = vec![0u8; 4096];
    let (n, mut sealer, _) = request.encode(b"x", now(), &mut wire);
    let keys = proto::shadowsocks::UserKeys::new(m, Some(PSK), [(0, USER)]).unwrap();
    let mut filter = proto::shadowsocks::SaltFilter::new(60, 16);
    let before_codec = dhat::HeapStats::get();
    let mut hs = proto::shadowsocks::tcp::ServerHandshake::new();
    let proto::shadowsocks::tcp::Handshake::Done(req) = hs
        .advance(&keys, &mut wire[..n], now(), None, &mut filter)
        .unwrap()
    else {
        panic!("handshake incomplete")
    };
    let mut server_opener = req.opener;
    let mut buf = vec![0u8; HEADROOM + CHUNK + TAG_LEN];
    let after_setup = dhat::HeapStats::get();
    for i in 0..MEASURED / CHUNK {
        buf[HEADROOM..HEADROOM + CHUNK].fill(i as u8);
        let frame = sealer.seal(&mut buf, HEADROOM..HEADROOM + CHUNK, 0);
        match server_opener.open(&mut buf[frame], 0).unwrap() {
            Opened::Chunk { payload, .. } => assert_eq!(payload.len(), CHUNK),
            Opened::NeedMore => panic!("whole chunk given"),
        }
    }
    let after = dhat::HeapStats::get();
    let per_connection = after_setup.total_blocks - before_codec.total_blocks;
    eprintln!("codec: {per_connection} allocations per connection set-up");
    assert_eq!(
        after.total_blocks - after_setup.total_blocks,
        0,
        "the codec allocated per chunk"
    );
}
