//! Allocations per relayed chunk over the WebSocket transport (VLESS over plain WebSocket),
//! counted by a global allocator that sees every thread, as in `alloc.rs`:
//!
//! - The frame decoder alone allocates nothing: 100 MiB of client frames decoded in place, zero.
//! - The whole relay, after warm-up, allocates less than once per 64 chunks (what remains is
//!   the runtime's timers, see `alloc.rs`): frames are decoded in the relay buffer, and each written
//!   frame's header comes from a fixed array.
//!
//! The client here allocates nothing per chunk either: it masks frames in one reused buffer
//! and reads the server's frames with a parser over another.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;

use e2e::{assert_far_fewer_allocations_than_chunks, read_more, start_engine, tcp_echo};
use proto::vless::Command;
use proto::ws::frame::{client_frame, unmask, FrameDecoder, OP_BINARY};
use proto::TargetAddr;
use serde_json::json;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const WARMUP: usize = 8 << 20;
const MEASURED: usize = 100 << 20;
const CHUNK: usize = 16 * 1024;
const MASK: [u8; 4] = [0x5a, 0xa5, 0x0f, 0xf0];

/// A masked binary frame of `CHUNK` bytes of `fill`, written into `out` (reused).
fn chunk_frame(out: &mut [u8; 8 + CHUNK], fill: u8) -> &[u8] {
    out[0] = 0x80 | OP_BINARY;
    out[1] = 0x80 | 126;
    out[2..4].copy_from_slice(&(CHUNK as u16).to_be_bytes());
    out[4..8].copy_from_slice(&MASK);
    out[8..].fill(fill);
    unmask(&mut out[8..], MASK, 0);
    &out[..]
}

fn upgrade(server: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(server).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "));
    s
}

#[test]
fn websocket_relay_allocates_far_less_than_once_per_chunk_and_the_decoder_never() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let handle = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "in", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "vless",
            "settings": {"users": [{"name": "u", "id": UUID}]}, "ws": {"path": "/ws"}}],
    }));
    let echo = tcp_echo();
    let mut stream = upgrade(handle.local_addr("in").unwrap());
    let command = Command::Tcp(TargetAddr::Ip(echo));
    let req = proto::vless::ClientRequest {
        uuid: proto::vless::parse_user_id(UUID).unwrap(),
        flow: "",
        command: &command,
    };
    let mut head = vec![0u8; req.encoded_len()];
    let n = req.encode(&mut head);
    let mut first = Vec::new();
    client_frame(OP_BINARY, true, MASK, &head[..n], &mut first);
    stream.write_all(&first).unwrap();

    let barrier = Arc::new(Barrier::new(2));
    let mut writer = stream.try_clone().unwrap();
    let b = Arc::clone(&barrier);
    let sender = thread::spawn(move || {
        let mut frame = Box::new([0u8; 8 + CHUNK]);
        let mut send = |total: usize| {
            for i in 0..total / CHUNK {
                writer.write_all(chunk_frame(&mut frame, i as u8)).unwrap();
            }
        };
        send(WARMUP);
        b.wait();
        send(MEASURED);
    });

    // Server frames (unmasked), parsed in one reused buffer; the VLESS response header (two
    // bytes) comes in front of the first echoed bytes.
    let mut buf = vec![0u8; 256 * 1024];
    let (mut start, mut end) = (0usize, 0usize);
    let mut owed = 0usize;
    let mut skip = 2usize;
    let mut receive = |total: usize| {
        let mut got = 0;
        while got < total {
            if owed > 0 && start < end {
                let n = owed.min(end - start);
                let s = skip.min(n);
                skip -= s;
                got += n - s;
                owed -= n;
                start += n;
                continue;
            }
            let avail = &buf[start..end];
            if owed == 0 && avail.len() >= 2 {
                let (len, hl) = match avail[1] & 0x7F {
                    126 if avail.len() >= 4 => {
                        (u16::from_be_bytes([avail[2], avail[3]]) as usize, 4)
                    }
                    127 if avail.len() >= 10 => (
                        u64::from_be_bytes(avail[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if hl > 0 {
                    assert_eq!(avail[0], 0x80 | OP_BINARY, "a data frame");
                    owed = len;
                    start += hl;
                    continue;
                }
            }
            read_more(&mut stream, &mut buf, &mut start, &mut end);
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
        "ws relay",
        after.total_blocks - before.total_blocks,
        2 * (MEASURED / CHUNK) as u64,
    );

    // The decoder alone: exactly zero.
    handle.stop(std::time::Duration::from_secs(1));
    let mut decoder = FrameDecoder::new(1 << 20);
    let mut frame = Box::new([0u8; 8 + CHUNK]);
    let before_codec = dhat::HeapStats::get();
    for i in 0..MEASURED / CHUNK {
        chunk_frame(&mut frame, i as u8);
        let got = decoder.decode(&mut frame[..]).unwrap();
        assert_eq!(got.data, CHUNK);
        assert_eq!(frame[CHUNK - 1], i as u8);
    }
    let after = dhat::HeapStats::get();
    assert_eq!(
        after.total_blocks - before_codec.total_blocks,
        0,
        "the decoder allocated per chunk"
    );
}
