//! VLESS, VMess, Trojan, Mux.Cool and Hysteria2 codecs, in process, no sockets: request parsing
//! with the user looked up among 1, 1 000 and 10 000 users (VMess tries users' keys, so its
//! cost grows with the count; the others are O(1)), VMess body chunks sealed and opened in
//! place per security, Mux.Cool frames, XTLS Vision's padding, Hysteria2's TCP request, UDP message, Salamander and
//! authentication request, and the cost of adding one user to a live table.
//!
//! `cargo bench -p benches --bench protocols [-- FILTER]`. Short measurements (2 s, 20
//! samples) so the suite takes a few minutes on two cores.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proto::hysteria2::salamander::{Salamander, SALT_LEN};
use proto::hysteria2::udp::UdpMessage;
use proto::hysteria2::{http3, tcp, Hysteria2Users};
use proto::mux::{parse_frame, Frame, MuxRead, Network, Status, MAX_HEADER_LEN};
use proto::shadowsocks::replay::SaltCheck;
use proto::vmess::{
    self, ClientRequest as VmessRequest, Handshake as VmessHandshake, Opened, Security,
    ServerHandshake, VmessUsers, SEAL_HEADROOM, SEAL_TAILROOM,
};
use proto::{trojan, vless, TargetAddr};

fn short() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20)
}

const USER_COUNTS: [u32; 3] = [1, 1_000, 10_000];

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The UUID of user `i`.
fn uuid(i: u32) -> [u8; 16] {
    let mut id = [0x5au8; 16];
    id[..4].copy_from_slice(&i.to_be_bytes());
    id[6] = 0x40;
    id
}

fn target() -> TargetAddr {
    TargetAddr::Domain("www.example.com".into(), 443)
}

/// A replay filter that has seen nothing (each iteration replays the same request).
struct Fresh;

impl SaltCheck for Fresh {
    fn check_and_insert(&mut self, _: &[u8], _: u64) -> bool {
        true
    }
}

fn vless_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("vless/request");
    for count in USER_COUNTS {
        let users = vless::VlessUsers::new((0..count).map(|i| (i, uuid(i)))).unwrap();
        let command = vless::Command::Tcp(target());
        let mut wire = vec![0u8; 256];
        let n = vless::ClientRequest {
            uuid: uuid(count - 1),
            flow: "",
            command: &command,
        }
        .encode(&mut wire);
        wire.truncate(n);
        g.bench_with_input(BenchmarkId::new("users", count), &wire, |b, wire| {
            b.iter(|| vless::parse_request(&users, wire).unwrap())
        });
    }
    g.finish();
}

fn trojan_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("trojan/request");
    for count in USER_COUNTS {
        let passwords: Vec<String> = (0..count).map(|i| format!("password {i}")).collect();
        let users = trojan::TrojanUsers::new(
            passwords
                .iter()
                .enumerate()
                .map(|(i, p)| (i as u32, p.as_str())),
        )
        .unwrap();
        let mut wire = vec![0u8; 256];
        let n = trojan::encode_request(
            &trojan::password_hash(&passwords[count as usize - 1]),
            trojan::Command::Connect,
            &target(),
            &mut wire,
        );
        wire.truncate(n);
        g.bench_with_input(BenchmarkId::new("users", count), &wire, |b, wire| {
            b.iter(|| trojan::parse_request(&users, wire).unwrap())
        });
    }
    g.finish();
}

/// A VMess request from user `user` (`security` for the body), and the client's sealer.
fn vmess_wire(user: u32, security: Security) -> (Vec<u8>, vmess::BodySealer) {
    let command = vmess::Command::Tcp(target());
    let request = VmessRequest {
        cmd_key: vmess::cmd_key(&uuid(user)),
        command: &command,
        security,
        options: vmess::option::CHUNK_STREAM | vmess::option::CHUNK_MASKING,
        key: [7; 16],
        iv: [9; 16],
        response_auth: 0x42,
        padding: 0,
        auth_random: [1, 2, 3, 4],
        nonce: [5; 8],
    };
    let mut wire = vec![0u8; request.encoded_len()];
    let (n, sealer, _) = request.encode(now(), &mut wire);
    wire.truncate(n);
    (wire, sealer)
}

/// The VMess handshake: the auth ID is tried against every user's key, the last user worst
/// of all without a hint (the user last seen from the client's address), best with one.
fn vmess_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("vmess/handshake");
    for count in USER_COUNTS {
        let users = VmessUsers::new((0..count).map(|i| (i, uuid(i)))).unwrap();
        let (wire, _) = vmess_wire(count - 1, Security::Aes128Gcm);
        for (name, hint) in [("no hint", None), ("hinted", Some(count - 1))] {
            let id = BenchmarkId::new(format!("last user, {name}"), count);
            g.bench_with_input(id, &wire, |b, wire| {
                let mut buf = wire.clone();
                b.iter(|| {
                    buf.copy_from_slice(wire);
                    let done = ServerHandshake::new()
                        .advance(&users, &mut buf, now(), hint, &mut Fresh)
                        .unwrap();
                    assert!(matches!(done, VmessHandshake::Done(_)));
                })
            });
        }
    }
    g.finish();
}

/// What one user change costs the control path: copy the installed table (persistent, so
/// O(1)), add a user to the copy, as when an admin creates a user on a live inbound.
fn user_change(c: &mut Criterion) {
    let mut g = c.benchmark_group("users/add one");
    for count in USER_COUNTS {
        let vmess = VmessUsers::new((0..count).map(|i| (i, uuid(i)))).unwrap();
        g.bench_function(BenchmarkId::new("vmess", count), |b| {
            b.iter(|| {
                let mut copy = vmess.clone();
                copy.insert(count, uuid(count)).unwrap();
                copy
            })
        });
        let vless = vless::VlessUsers::new((0..count).map(|i| (i, uuid(i)))).unwrap();
        g.bench_function(BenchmarkId::new("vless", count), |b| {
            b.iter(|| {
                let mut copy = vless.clone();
                copy.insert(count, uuid(count)).unwrap();
                copy
            })
        });
    }
    g.finish();
}

/// VMess body chunks (16 KiB less the tail room) sealed by the client and opened by the
/// server, in place, per security.
fn vmess_body(c: &mut Criterion) {
    let mut g = c.benchmark_group("vmess/body");
    let users = VmessUsers::new([(0, uuid(0))]).unwrap();
    let payload = vmess::MAX_CHUNK_PAYLOAD;
    g.throughput(Throughput::Bytes(payload as u64));
    for (name, security) in [
        ("aes-128-gcm", Security::Aes128Gcm),
        ("chacha20-poly1305", Security::Chacha20Poly1305),
        ("none", Security::None),
    ] {
        let (mut wire, mut sealer) = vmess_wire(0, security);
        let VmessHandshake::Done(request) = ServerHandshake::new()
            .advance(&users, &mut wire, now(), None, &mut Fresh)
            .unwrap()
        else {
            panic!("handshake incomplete")
        };
        let mut opener = request.opener();
        let mut buf = vec![0u8; SEAL_HEADROOM + payload + SEAL_TAILROOM];
        g.bench_function(name, |b| {
            b.iter(|| {
                let sealed = sealer.seal(&mut buf, SEAL_HEADROOM..SEAL_HEADROOM + payload);
                let chunk = &mut buf[sealed];
                match opener.open(chunk).unwrap() {
                    Opened::Chunk { payload: p, .. } => assert_eq!(p.len(), payload),
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    g.finish();
}

fn mux_frame(c: &mut Criterion) {
    let mut g = c.benchmark_group("mux");
    let data = vec![0x33u8; 8 * 1024];
    let frame = Frame {
        session: 7,
        status: Status::Keep,
        options: 0,
        target: Some((
            Network::Udp,
            TargetAddr::Ip("203.0.113.9:53".parse().unwrap()),
        )),
        global_id: None,
    };
    let mut buf = vec![0u8; MAX_HEADER_LEN + data.len()];
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("keep frame write + parse (8 KiB, XUDP address)", |b| {
        b.iter(|| {
            let n = frame.write(&mut buf, Some(data.len() as u16));
            buf[n..n + data.len()].copy_from_slice(&data);
            match parse_frame(&buf[..n + data.len()]).unwrap() {
                MuxRead::Frame { consumed, .. } => assert_eq!(consumed, n + data.len()),
                MuxRead::NeedMore => panic!("whole frame"),
            }
        })
    });
    g.finish();
}

/// XTLS Vision's padding phase: an 8 KiB block written (UUID, header, content, padding) and
/// unpadded in place, and the filter over a packet.
fn vless_vision(c: &mut Criterion) {
    use vless::vision::{padding_len, write_block, Command, TlsFilter, Unpadder, MAX_CONTENT};
    let mut g = c.benchmark_group("vless/vision");
    let id = uuid(1);
    let content = vec![0x17u8; MAX_CONTENT];
    let padding = padding_len(content.len(), true, 77);
    let mut block = vec![0u8; 21 + content.len() + padding];
    g.throughput(Throughput::Bytes(content.len() as u64));
    g.bench_function("block write + unpad (8 KiB)", |b| {
        b.iter(|| {
            let n = write_block(&mut block, Some(&id), Command::Continue, &content, padding);
            let mut unpadder = Unpadder::new(id);
            let out = unpadder.unpad(&mut block[..n]).unwrap();
            assert_eq!(out.len, content.len());
        })
    });
    g.bench_function("filter, one packet", |b| {
        b.iter(|| {
            let mut filter = TlsFilter::default();
            filter.observe(&content);
            filter
        })
    });
    g.finish();
}

fn hysteria2(c: &mut Criterion) {
    let mut g = c.benchmark_group("hysteria2");
    let mut request = Vec::new();
    tcp::encode_request("www.example.com:443", &[b'p'; 64], &mut request);
    g.bench_function("tcp request", |b| {
        b.iter(|| tcp::parse_request(&request).unwrap())
    });
    let payload = [0x44u8; 1100];
    let mut datagram = Vec::new();
    UdpMessage {
        session_id: 1,
        packet_id: 2,
        frag_id: 0,
        frag_count: 1,
        address: b"203.0.113.9:53",
        payload: &payload,
    }
    .encode(&mut datagram);
    g.bench_function("udp message parse", |b| {
        b.iter(|| UdpMessage::parse(&datagram).unwrap())
    });
    let mut auth = Vec::new();
    http3::push_auth_request(b"password 9999", 0, &[b'x'; 128], &mut auth);
    g.bench_function("auth request head", |b| {
        b.iter(|| http3::parse_request_head(&auth, http3::MAX_FIELD_SECTION_SIZE).unwrap())
    });
    let passwords: Vec<String> = (0..10_000).map(|i| format!("password {i}")).collect();
    let users = Hysteria2Users::new(
        passwords
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.as_str())),
    )
    .unwrap();
    g.bench_function("user lookup, 10000 users", |b| {
        b.iter(|| users.get(b"password 9999").unwrap())
    });
    let obfs = Salamander::new(b"obfuscation password").unwrap();
    let mut packet = vec![0u8; SALT_LEN + 1200];
    g.throughput(Throughput::Bytes(1200));
    g.bench_function("salamander 1200-byte packet both ways", |b| {
        b.iter(|| {
            obfs.obfuscate([1, 2, 3, 4, 5, 6, 7, 8], &mut packet);
            obfs.deobfuscate(&mut packet).unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = short();
    targets = vless_request, trojan_request, vmess_handshake, user_change, vmess_body, mux_frame,
        vless_vision, hysteria2
}
criterion_main!(benches);
