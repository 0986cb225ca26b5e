//! Shadowsocks codecs, per method: TCP chunk seal + open in place, the server handshake with
//! many users, and UDP packet decoding.
//!
//! `cargo bench -p benches --bench shadowsocks [-- FILTER]`. Every measurement is short
//! (2 s, 20 samples) so the whole suite takes a few minutes on two cores.

use std::time::Duration;

use base64::Engine as _;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use proto::shadowsocks::replay::SaltCheck;
use proto::shadowsocks::tcp::{ClientRequest, Handshake, Opened, ServerHandshake, StreamSealer};
use proto::shadowsocks::udp::{decode_client_packet, UdpClient, UDP_HEADROOM};
use proto::shadowsocks::{Key, Method, UserId, UserKeys, TAG_LEN};
use proto::TargetAddr;

fn short() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The password (2017) or base64 PSK (2022) of user `i`.
fn password(method: Method, i: u32) -> String {
    if method.is_2022() {
        let seed = blake3_like(i);
        base64::engine::general_purpose::STANDARD.encode(&seed[..method.key_len()])
    } else {
        format!("user-{i}-password")
    }
}

/// 32 distinct bytes per index (no crypto needed, only distinct keys).
fn blake3_like(i: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = (u64::from(i) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in out.chunks_mut(8) {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}

fn server_psk(method: Method) -> String {
    base64::engine::general_purpose::STANDARD.encode(&[0x5au8; 32][..method.key_len()])
}

fn keys(method: Method, users: u32, identity: bool) -> UserKeys {
    let psk = identity.then(|| server_psk(method));
    let passwords: Vec<String> = (0..users).map(|i| password(method, i)).collect();
    UserKeys::new(
        method,
        psk.as_deref(),
        passwords
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.as_str())),
    )
    .unwrap_or_else(|(u, e)| panic!("user {u:?}: {e}"))
}

fn target() -> TargetAddr {
    TargetAddr::Ip(([127, 0, 0, 1], 443).into())
}

/// Accepts every salt: a benchmark replays the same request on purpose.
struct NoReplayCheck;

impl SaltCheck for NoReplayCheck {
    fn check_and_insert(&mut self, _salt: &[u8], _now: u64) -> bool {
        true
    }
}

/// A client request from `user` with a small initial payload, and the client's sealer.
fn request(method: Method, user: u32, identity: bool, now: u64) -> (Vec<u8>, StreamSealer) {
    let key = Key::from_password(method, &password(method, user)).expect("valid key");
    let ipsk = identity.then(|| Key::from_base64(method, &server_psk(method)).expect("psk"));
    let salt = [0x33u8; 32];
    let target = target();
    let req = ClientRequest {
        method,
        key: &key,
        identity: ipsk.as_ref(),
        salt: &salt[..method.salt_len()],
        target: &target,
        padding: 0,
    };
    let mut out = vec![0u8; 1024];
    let (n, sealer, _) = req.encode(b"GET / HTTP/1.1\r\n\r\n", now, &mut out);
    out.truncate(n);
    (out, sealer)
}

/// TCP chunks: the client seals a chunk in place, the server opens it in place (one pass
/// each way), at 16 KiB and at the method's largest chunk.
fn chunks(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_chunk_seal_open");
    for method in Method::ALL {
        let now = now();
        let keys = keys(method, 1, false);
        let (mut wire, mut sealer) = request(method, 0, false, now);
        let Ok(Handshake::Done(req)) =
            ServerHandshake::new().advance(&keys, &mut wire, now, None, &mut NoReplayCheck)
        else {
            panic!("{method}: handshake failed");
        };
        let mut opener = req.opener;
        let max = method.max_chunk_payload();
        let mut sizes = vec![max.min(16 * 1024), max];
        sizes.dedup();
        for size in sizes {
            let prefix = sealer.prefix_len();
            let mut buf = vec![0x61u8; prefix + size + TAG_LEN];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::new(method.name(), size), &size, |b, &size| {
                b.iter(|| {
                    let frame = sealer.seal(&mut buf, prefix..prefix + size, now);
                    match opener.open(&mut buf[frame], now) {
                        Ok(Opened::Chunk { payload, .. }) => payload.len(),
                        other => panic!("open failed: {other:?}"),
                    }
                })
            });
        }
    }
    group.finish();
}

/// The server handshake on a pre-encoded request, with 1, 1 000 and 10 000 users.
///
/// Trial-decryption methods (every AEAD 2017 method, and 2022 without a server PSK) are shown
/// at their worst (the sender is the last user tried, no hint) and with the source-address
/// hint the engine keeps. Identity-header methods (2022 AES with a server PSK) find the user
/// in O(1) from the identity header.
fn handshakes(c: &mut Criterion) {
    let now = now();
    for users in [1u32, 1_000, 10_000] {
        let mut group = c.benchmark_group(format!("tcp_handshake_{users}_users"));
        if users >= 10_000 {
            // Milliseconds per iteration at worst: one iteration per sample is plenty.
            group.sampling_mode(SamplingMode::Flat);
        }
        for method in Method::ALL {
            let mut shapes = vec![("trial", false)];
            if method.supports_identity_headers() {
                shapes.push(("identity", true));
            }
            for (shape, identity) in shapes {
                let keys = keys(method, users, identity);
                let last: UserId = users - 1;
                let (wire, _) = request(method, last, identity, now);
                let mut buf = wire.clone();
                let mut hints = vec![("worst", None)];
                if !identity && users > 1 {
                    hints.push(("hinted", Some(last)));
                }
                for (hint_name, hint) in hints {
                    let id = format!("{}/{shape}/{hint_name}", method.name());
                    group.bench_function(id, |b| {
                        b.iter(|| {
                            buf.copy_from_slice(&wire);
                            match ServerHandshake::new().advance(
                                &keys,
                                &mut buf,
                                now,
                                hint,
                                &mut NoReplayCheck,
                            ) {
                                Ok(Handshake::Done(req)) => req.user,
                                _ => panic!("handshake failed"),
                            }
                        })
                    });
                }
            }
        }
        group.finish();
    }
}

/// Decoding one client UDP packet (1200-byte payload), single user and with identity headers.
fn udp(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_decode");
    let now = now();
    let payload = 1200;
    for method in Method::ALL {
        let mut shapes = vec![("single", false)];
        if method.supports_identity_headers() {
            shapes.push(("identity", true));
        }
        for (shape, identity) in shapes {
            let keys = keys(method, 1, identity);
            let key = Key::from_password(method, &password(method, 0)).expect("key");
            let ipsk =
                identity.then(|| Key::from_base64(method, &server_psk(method)).expect("psk"));
            let mut client = UdpClient::new(method, key, ipsk, 0x1234_5678);
            let mut buf = vec![0x62u8; UDP_HEADROOM + payload + TAG_LEN];
            let range = client.encode(
                &mut buf,
                UDP_HEADROOM..UDP_HEADROOM + payload,
                &target(),
                now,
                &[0x77; 32],
            );
            let packet = buf[range].to_vec();
            let mut work = packet.clone();
            let mut scratch = vec![0u8; packet.len()];
            group.throughput(Throughput::Bytes(payload as u64));
            let id = format!("{}/{shape}", method.name());
            group.bench_with_input(BenchmarkId::new(id, payload), &payload, |b, _| {
                b.iter(|| {
                    work.copy_from_slice(&packet);
                    decode_client_packet(&keys, &mut work, now, None, &mut scratch)
                        .expect("valid packet")
                        .payload
                        .len()
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = codecs;
    config = short();
    targets = chunks, handshakes, udp
}
criterion_main!(codecs);
