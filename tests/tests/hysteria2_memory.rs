//! What a Hysteria2 client can make the server hold. Stream data quinn has not delivered
//! (here: the bytes after a TCP request whose connection to its target is still pending)
//! keeps the received packets it came in alive; those must be the packets' own bytes, not shared
//! receive areas, or a few held bytes between another client's bulk traffic would keep
//! whole areas of it, far beyond any flow-control window.

use std::time::Duration;

use e2e::*;
use hy2_client::*;
use proto::hysteria2::tcp;
use serde_json::json;

mod hy2_client;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const PASSWORD: &str = "correct horse battery staple";
/// Rounds of one held packet followed by a bulk transfer of [`BULK`] bytes.
const ROUNDS: usize = 100;
const BULK: usize = 128 * 1024;
/// What the held packets may cost the server at most, all together: far more than their
/// bytes and quinn's bookkeeping, far less than a shared receive area per packet.
const HELD_AT_MOST: usize = 3 << 20;

/// A TCP listener whose accept queue is full (a backlog of none, one connection waiting):
/// the kernel drops further connection attempts, which stay pending. Keep what it returns
/// alive as long as they should.
fn black_hole() -> (
    std::net::SocketAddr,
    (socket2::Socket, Vec<std::net::TcpStream>),
) {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&addr.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let fillers = (0..2)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
        })
        .collect();
    (addr, (listener, fillers))
}

/// Sends `chunk` up the echo stream and reads as many bytes back (`pending` counts what is
/// still to come).
async fn round_trip(
    up: &mut quinn::SendStream,
    down: &mut quinn::RecvStream,
    chunk: &[u8],
    pending: &mut usize,
    buf: &mut [u8],
) {
    up.write_all(chunk).await.unwrap();
    *pending += chunk.len();
    while *pending > 0 {
        let n = tokio::time::timeout(Duration::from_secs(30), down.read(buf))
            .await
            .expect("the echo within 30 s")
            .unwrap()
            .expect("the echo");
        *pending = pending.saturating_sub(n);
    }
}

#[test]
fn held_stream_data_keeps_only_its_own_packets() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let (cert, key, trusted) = certificate();
    let handle = start_engine(json!({
        "workers": 1,
        // The held request's connection attempt lasts this long.
        "timeouts": {"connect_secs": 120},
        "outbound": {"allow_loopback": true},
        "inbounds": [{
            "tag": "hy2", "listen": "127.0.0.1:0", "network": ["udp"],
            "protocol": "hysteria2",
            "settings": {"users": [{"name": "u", "password": PASSWORD}]},
            "tls": {"certificate": cert, "key": key},
        }],
    }));
    let server = handle.local_addr("hy2").unwrap();
    let echo = tcp_echo();
    let (pending_target, _hole) = black_hole();
    let rt = runtime();
    let grown = rt.block_on(async {
        // The bulk client: authenticated, one TCP stream to an echo.
        let bulk = connect(server, &trusted, false).await;
        assert_eq!(auth(&bulk, PASSWORD).await.status, 233);
        let (mut up, mut down) = bulk.open_bi().await.unwrap();
        let mut request = Vec::new();
        tcp::encode_request(&echo.to_string(), b"", &mut request);
        up.write_all(&request).await.unwrap();
        // The TCP response (status, message, padding) comes first: read it off whole.
        let mut head = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = down.read(&mut buf).await.unwrap().expect("a TCP response");
            head.extend_from_slice(&buf[..n]);
            if let proto::Progress::Done(r) = tcp::parse_response(&head).unwrap() {
                assert!(r.ok, "TCP request refused");
                assert_eq!(
                    r.consumed,
                    head.len(),
                    "nothing echoed before anything was sent"
                );
                break;
            }
        }
        let chunk = vec![0x5a; BULK];
        let mut pending = 0;
        // Warm up: the server's per-connection state and buffers exist before measuring.
        round_trip(&mut up, &mut down, &chunk, &mut pending, &mut buf).await;

        // The holder: its TCP request's connection never completes, so quinn keeps every
        // later byte of the stream undelivered.
        let holder = connect(server, &trusted, false).await;
        assert_eq!(auth(&holder, PASSWORD).await.status, 233);
        let (mut held, _held_down) = holder.open_bi().await.unwrap();
        let mut request = Vec::new();
        tcp::encode_request(&pending_target.to_string(), b"", &mut request);
        held.write_all(&request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        round_trip(&mut up, &mut down, &chunk, &mut pending, &mut buf).await;

        let before = dhat::HeapStats::get().curr_bytes;
        for i in 0..ROUNDS {
            held.write_all(&[i as u8; 16]).await.unwrap();
            // Let the small packet go out on its own, ahead of the bulk data.
            tokio::time::sleep(Duration::from_millis(5)).await;
            round_trip(&mut up, &mut down, &chunk, &mut pending, &mut buf).await;
        }
        let after = dhat::HeapStats::get().curr_bytes;
        drop((held, holder, up, down, bulk));
        after.saturating_sub(before)
    });
    assert!(
        grown < HELD_AT_MOST,
        "{ROUNDS} held packets of 16 bytes cost the server {grown} bytes"
    );
    handle.stop(Duration::from_secs(1));
}
