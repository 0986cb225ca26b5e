//! Tests of the VMess codec: a request captured from a real client, published key vectors,
//! sessions in every security and option combination real clients send, one test per peer
//! error.

use super::handshake::{fnv1a, seal_request_header};
use super::option::{AUTHENTICATED_LENGTH, CHUNK_MASKING, CHUNK_STREAM, GLOBAL_PADDING};
use super::*;
use crate::fuzzing::{feed_vmess_body, feed_vmess_handshake, vmess_seal, VmessBody};
use crate::shadowsocks::SaltFilter;
use crate::TargetAddr;

const NOW: u64 = 1_700_000_000;
const STEPS: [usize; 4] = [1, 7, 1000, usize::MAX];

pub(super) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn uuid(n: u8) -> [u8; 16] {
    [n; 16]
}

/// Two users, ids 10 and 20; the client is the second.
fn users() -> VmessUsers {
    VmessUsers::new([(10, uuid(1)), (20, uuid(2))]).unwrap()
}

fn tcp() -> Command {
    Command::Tcp(TargetAddr::Domain("example.com".into(), 443))
}

fn udp() -> Command {
    Command::Udp(TargetAddr::Ip("8.8.8.8:53".parse().unwrap()))
}

fn client<'a>(command: &'a Command, security: Security, options: u8) -> ClientRequest<'a> {
    ClientRequest {
        cmd_key: cmd_key(&uuid(2)),
        command,
        security,
        options,
        key: [0x4b; 16],
        iv: [0x1f; 16],
        response_auth: 0xa5,
        padding: 5,
        auth_random: [1, 2, 3, 4],
        nonce: [9; 8],
    }
}

fn encode(request: &ClientRequest, now: u64) -> (Vec<u8>, BodySealer, BodyOpener) {
    let mut out = vec![0u8; request.encoded_len()];
    let (n, sealer, opener) = request.encode(now, &mut out);
    assert_eq!(n, out.len());
    (out, sealer, opener)
}

fn filter() -> SaltFilter {
    SaltFilter::new(AUTH_ID_TTL, 1024)
}

/// The server's answer to `wire` all at once with a fresh replay filter.
fn accept(wire: &[u8], now: u64) -> Result<Request, PeerError> {
    let mut buf = wire.to_vec();
    let whole = buf.len();
    let (request, _) = feed_vmess_handshake(&users(), &mut buf, whole, now, &mut filter())?
        .expect("a whole request completes the handshake");
    Ok(request)
}

/// The error of a result whose success type has no `PartialEq`.
fn error<T>(result: Result<T, PeerError>) -> PeerError {
    match result {
        Ok(_) => panic!("expected a peer error"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// Published vectors

/// A request captured from a v2ray client (vmess-aead-python's `tests/test.hex`): user
/// b831381d-6324-4d53-ad4f-8cda48b30811, server clock 1703242500, aes-128-gcm with chunk
/// stream, masking and global padding, TCP to 104.26.12.31:80, one chunk of curl's request.
#[test]
fn vector_captured_v2ray_request() {
    let mut wire = hex(concat!(
        "62365f27d7d46c8c7afa1e47b3e7ae44f8c74911f48249306adc6c79224243239902c77fd3c0ece0852a",
        "777d2600e848c7eb3e625ec0febb94b8ce63c58868c0dfe419255317b03121484c3ee79604f248c78d",
        "21408b69108feacafbc2f5d42b559857222d73f1e48e66d09daae8a2d1048436b9b96fa9ce3f101acc",
        "69affc11eccc11492ee0abe27a1e827ceebeedd0ed4b9eeb64442227dee06c6d5e6c49a61c2985d7fc",
        "466472228ee578a71efe2bb67b2069dd0c776df4097ea697263ef3d336bdd3be6fb863c0b9c9907283",
        "c47d6dd54e637ff99408ac1ea9dc3600d3b1062fdcd04714",
    ));
    let user = crate::vless::parse_user_id("b831381d-6324-4d53-ad4f-8cda48b30811").unwrap();
    let users = VmessUsers::new([(1, user)]).unwrap();
    let now = 1_703_242_500;
    let total = wire.len();
    let (request, _) = feed_vmess_handshake(&users, &mut wire, total, now, &mut filter())
        .unwrap()
        .unwrap();
    assert_eq!(request.user, 1);
    assert_eq!(
        request.command,
        Command::Tcp(TargetAddr::Ip("104.26.12.31:80".parse().unwrap()))
    );
    assert_eq!(request.security, Security::Aes128Gcm);
    assert_eq!(
        request.options,
        CHUNK_STREAM | CHUNK_MASKING | GLOBAL_PADDING
    );
    let (key, iv, response_auth) = request.secrets();
    assert_eq!(key.to_vec(), hex("ec5190231ac5e588c38dca4d7700a04c"));
    assert_eq!(iv.to_vec(), hex("b0e0372ed1becf2988cdbf592d29a374"));
    assert_eq!(response_auth, 120);
    let body = &wire[request.consumed..];
    let got = feed_vmess_body(&mut request.opener(), body, usize::MAX).unwrap();
    assert_eq!(
        got.chunks,
        [&b"GET / HTTP/1.1\r\nHost: ip.sb\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"[..]]
    );
    assert_eq!(got.left, 0);
    // The same bytes when the server's clock is 121 s past the client's are stale.
    let mut again = wire.clone();
    let late = 1_703_242_529 + 121;
    assert_eq!(
        error(feed_vmess_handshake(
            &users,
            &mut again,
            total,
            late,
            &mut filter()
        )),
        PeerError::StaleTimestamp {
            got: 1_703_242_529,
            now: late
        }
    );
}

/// The command key of a UUID (swift-nio-proxies' VMESS tests).
#[test]
fn vector_cmd_key() {
    let id = crate::vless::parse_user_id("450bae28-b9da-67d0-16bc-4918dc8d79b5").unwrap();
    assert_eq!(
        cmd_key(&id).to_vec(),
        hex("da8b7df4396329ebe7a74afc62a9e7c8")
    );
}

#[test]
fn fnv1a_vectors() {
    assert_eq!(fnv1a(b""), 0x811c_9dc5);
    assert_eq!(fnv1a(b"a"), 0xe40c_292c);
    assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// Option sets real clients send: v2ray 4.34 (AEAD: stream, masking, padding; none: stream and
/// masking), sing-box (masking, padding and authenticated length as configured; none: nothing
/// for TCP, chunk stream for UDP), Xray (authenticated length on).
fn profiles() -> Vec<(Security, u8)> {
    let mut out = Vec::new();
    for security in [Security::Aes128Gcm, Security::Chacha20Poly1305] {
        for options in [
            CHUNK_STREAM,
            CHUNK_STREAM | CHUNK_MASKING,
            CHUNK_STREAM | CHUNK_MASKING | GLOBAL_PADDING,
            CHUNK_STREAM | CHUNK_MASKING | AUTHENTICATED_LENGTH,
            CHUNK_STREAM | CHUNK_MASKING | GLOBAL_PADDING | AUTHENTICATED_LENGTH,
        ] {
            out.push((security, options));
        }
    }
    for options in [
        0,
        CHUNK_STREAM,
        CHUNK_STREAM | CHUNK_MASKING,
        CHUNK_STREAM | CHUNK_MASKING | GLOBAL_PADDING,
    ] {
        out.push((Security::None, options));
    }
    out
}

fn chunks() -> Vec<Vec<u8>> {
    vec![
        b"x".to_vec(),
        (0..1000).map(|i| i as u8).collect(),
        vec![0xcd; MAX_CHUNK_PAYLOAD],
    ]
}

/// A whole session read `step` bytes at a time: request with a first chunk in the same write,
/// chunks each way, the end marker each way (where there is framing).
fn session(command: &Command, security: Security, options: u8, step: usize) {
    let what = format!("{security:?} {options:#04x} {command:?} step {step}");
    let request = client(command, security, options);
    let (mut wire, mut up, mut down_opener) = encode(&request, NOW);
    let header_len = wire.len();
    let chunked = security != Security::None || options & CHUNK_STREAM != 0;
    let sent = chunks();
    for c in &sent {
        wire.extend(vmess_seal(&mut up, c));
    }
    if chunked {
        wire.extend(vmess_seal(&mut up, b""));
    }

    let mut buf = wire.clone();
    let (request, fed) = feed_vmess_handshake(&users(), &mut buf, step, NOW, &mut filter())
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: the whole request was not enough"));
    assert!(fed >= header_len, "{what}");
    assert_eq!(request.consumed, header_len, "{what}");
    assert_eq!(request.user, 20, "{what}");
    assert_eq!(&request.command, command, "{what}");
    assert_eq!(
        (request.security, request.options),
        (security, options),
        "{what}"
    );
    let body = feed_vmess_body(&mut request.opener(), &wire[header_len..], step).unwrap();
    check_body(body, &sent, chunked, &what);

    let mut down = request.sealer();
    let replies: Vec<Vec<u8>> = sent.iter().rev().cloned().collect();
    let mut stream = Vec::new();
    for c in &replies {
        stream.extend(vmess_seal(&mut down, c));
    }
    if chunked {
        stream.extend(vmess_seal(&mut down, b""));
    }
    let body = feed_vmess_body(&mut down_opener, &stream, step).unwrap();
    check_body(body, &replies, chunked, &what);
}

/// Chunked bodies come back chunk for chunk and end; raw ones come back as the same bytes.
fn check_body(body: VmessBody, sent: &[Vec<u8>], chunked: bool, what: &str) {
    assert_eq!(body.left, 0, "{what}");
    assert_eq!(body.ended, chunked, "{what}");
    if chunked {
        assert_eq!(body.chunks, sent, "{what}");
    } else {
        assert_eq!(body.chunks.concat(), sent.concat(), "{what}");
    }
}

#[test]
fn sessions_every_profile_and_command() {
    for (security, options) in profiles() {
        for command in [tcp(), udp(), Command::Mux] {
            if security == Security::None && options & CHUNK_STREAM == 0 && command == udp() {
                continue; // rejected: see bad_options
            }
            for step in STEPS {
                session(&command, security, options, step);
            }
        }
    }
}

/// The response header goes out alone when the server answers before any payload.
#[test]
fn response_header_alone() {
    for (security, options) in profiles() {
        let command = tcp();
        let (wire, _, mut opener) = encode(&client(&command, security, options), NOW);
        let request = accept(&wire, NOW).unwrap();
        let mut sealer = request.sealer();
        let mut header = [0u8; RESPONSE_HEADER_LEN];
        assert_eq!(sealer.take_header(&mut header), RESPONSE_HEADER_LEN);
        assert_eq!(sealer.take_header(&mut header), 0);
        let mut stream = header.to_vec();
        stream.extend(vmess_seal(&mut sealer, b"late"));
        let body = feed_vmess_body(&mut opener, &stream, 5).unwrap();
        assert_eq!(body.chunks.concat(), b"late");
    }
}

#[test]
fn every_prefix_needs_more() {
    let command = tcp();
    let (wire, _, _) = encode(&client(&command, Security::Aes128Gcm, CHUNK_STREAM), NOW);
    let users = users();
    for cut in 0..wire.len() {
        let mut prefix = wire[..cut].to_vec();
        let outcome = ServerHandshake::new().advance(&users, &mut prefix, NOW, None, &mut filter());
        assert!(matches!(outcome, Ok(Handshake::NeedMore)), "cut at {cut}");
    }
}

#[test]
fn hint_and_multi_user() {
    let many = VmessUsers::new((0..50u8).map(|n| (u32::from(n), uuid(n)))).unwrap();
    assert_eq!(many.len(), 50);
    for n in [0u8, 2, 49] {
        let command = tcp();
        let request = ClientRequest {
            cmd_key: cmd_key(&uuid(n)),
            ..client(&command, Security::Aes128Gcm, CHUNK_STREAM)
        };
        let (wire, _, _) = encode(&request, NOW);
        for hint in [None, Some(u32::from(n)), Some(7), Some(999)] {
            let mut buf = wire.clone();
            let outcome = ServerHandshake::new()
                .advance(&many, &mut buf, NOW, hint, &mut filter())
                .unwrap();
            let Handshake::Done(request) = outcome else {
                panic!("whole request")
            };
            assert_eq!(request.user, u32::from(n));
        }
    }
}

/// Users changed one at a time: a removed or re-keyed user's old UUID no longer opens, everyone
/// else's still does, and a clone taken before the changes is unaffected.
#[test]
fn users_change_one_at_a_time() {
    let opens = |users: &VmessUsers, n: u8| -> Option<u32> {
        let command = tcp();
        let request = ClientRequest {
            cmd_key: cmd_key(&uuid(n)),
            ..client(&command, Security::Aes128Gcm, CHUNK_STREAM)
        };
        let (mut wire, _, _) = encode(&request, NOW);
        match ServerHandshake::new().advance(users, &mut wire, NOW, None, &mut filter()) {
            Ok(Handshake::Done(request)) => Some(request.user),
            _ => None,
        }
    };
    let mut users = VmessUsers::new((0..20u8).map(|n| (u32::from(n), uuid(n)))).unwrap();
    let before = users.clone();
    assert!(users.remove(3));
    assert!(!users.remove(3));
    assert!(users.remove(19));
    users.insert(5, uuid(100)).unwrap();
    assert_eq!(
        users.insert(6, uuid(7)).err(),
        Some((6, ConfigError::DuplicateUser))
    );
    users.insert(3, uuid(3)).unwrap();
    assert_eq!(users.len(), 19);
    for n in 0..20u8 {
        let want = match n {
            5 | 19 => None,
            n => Some(u32::from(n)),
        };
        assert_eq!(opens(&users, n), want, "uuid {n}");
        assert_eq!(opens(&before, n), Some(u32::from(n)), "uuid {n} before");
    }
    assert_eq!(opens(&users, 100), Some(5));
    assert_eq!(opens(&before, 100), None);
    assert!(users.contains(6) && !users.contains(19));
}

// ---------------------------------------------------------------------------------------------
// What peers get wrong

/// Noise of `len` bytes (SplitMix64).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let z = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            (z ^ (z >> 29)) as u8
        })
        .collect()
}

#[test]
fn random_bytes_and_wrong_user_are_bad_auth() {
    for seed in 0..32 {
        assert_eq!(error(accept(&noise(seed, 200), NOW)), PeerError::BadAuth);
    }
    let command = tcp();
    let stranger = ClientRequest {
        cmd_key: cmd_key(&uuid(3)),
        ..client(&command, Security::Aes128Gcm, CHUNK_STREAM)
    };
    let (wire, _, _) = encode(&stranger, NOW);
    assert_eq!(error(accept(&wire, NOW)), PeerError::BadAuth);
}

#[test]
fn timestamps_outside_the_window() {
    let command = tcp();
    let request = client(&command, Security::Aes128Gcm, CHUNK_STREAM);
    for sent in [NOW - 121, NOW + 121] {
        let (wire, _, _) = encode(&request, sent);
        assert_eq!(
            error(accept(&wire, NOW)),
            PeerError::StaleTimestamp {
                got: sent as i64,
                now: NOW
            }
        );
    }
    for sent in [NOW - 120, NOW + 120] {
        let (wire, _, _) = encode(&request, sent);
        assert!(accept(&wire, NOW).is_ok());
    }
    // A timestamp that is negative as the signed integer Xray reads.
    let (wire, _, _) = encode(&request, u64::MAX - 5);
    assert_eq!(
        error(accept(&wire, NOW)),
        PeerError::StaleTimestamp { got: -6, now: NOW }
    );
}

#[test]
fn replayed_auth_id() {
    let command = tcp();
    let (wire, _, _) = encode(&client(&command, Security::Aes128Gcm, CHUNK_STREAM), NOW);
    let mut replay = filter();
    let users = users();
    let whole = wire.len();
    assert!(matches!(
        feed_vmess_handshake(&users, &mut wire.clone(), whole, NOW, &mut replay),
        Ok(Some(_))
    ));
    for now in [NOW + 1, NOW + MAX_TIME_DIFF] {
        assert_eq!(
            error(feed_vmess_handshake(
                &users,
                &mut wire.clone(),
                whole,
                now,
                &mut replay
            )),
            PeerError::Replay
        );
    }
}

#[test]
fn tampered_header_is_bad_header() {
    let command = tcp();
    let (wire, _, _) = encode(&client(&command, Security::Aes128Gcm, CHUNK_STREAM), NOW);
    // The sealed length, the nonce (which keys both), the sealed header, its tag.
    for at in [16, 33, 34, 41, 42, 60, wire.len() - 1] {
        let mut bad = wire.clone();
        bad[at] ^= 0x80;
        assert_eq!(error(accept(&bad, NOW)), PeerError::BadHeader, "byte {at}");
    }
}

/// A request from user 2 whose header plaintext is exactly `plaintext`, with a valid seal.
fn forged(plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; 42 + plaintext.len() + TAG_LEN];
    out[42..42 + plaintext.len()].copy_from_slice(plaintext);
    let n = seal_request_header(
        &cmd_key(&uuid(2)),
        NOW,
        [5; 4],
        [6; 8],
        &mut out,
        plaintext.len(),
    );
    assert_eq!(n, out.len());
    out
}

/// Header plaintext: version, IV, key, V, options, P|Sec, reserved, command, then `rest` and a
/// valid checksum.
fn plaintext(version: u8, options: u8, pad_sec: u8, command: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = vec![version];
    h.extend_from_slice(&[0x1f; 16]);
    h.extend_from_slice(&[0x4b; 16]);
    h.extend_from_slice(&[0xa5, options, pad_sec, 0, command]);
    h.extend_from_slice(rest);
    let sum = fnv1a(&h);
    h.extend_from_slice(&sum.to_be_bytes());
    h
}

const IPV4: [u8; 7] = [0, 80, 1, 10, 0, 0, 1];

#[test]
fn header_fields() {
    let ok = plaintext(1, CHUNK_STREAM, 0x03, 1, &IPV4);
    assert!(accept(&forged(&ok), NOW).is_ok());
    let cases = [
        (
            plaintext(2, CHUNK_STREAM, 0x03, 1, &IPV4),
            PeerError::BadVersion(2),
        ),
        (
            plaintext(1, CHUNK_STREAM, 0x03, 4, &IPV4),
            PeerError::BadCommand(4),
        ),
        (
            plaintext(1, CHUNK_STREAM, 0x01, 1, &IPV4),
            PeerError::BadSecurity(1),
        ),
        (
            plaintext(1, CHUNK_STREAM, 0x02, 1, &IPV4),
            PeerError::BadSecurity(2),
        ),
        (
            plaintext(1, CHUNK_STREAM, 0x00, 1, &IPV4),
            PeerError::BadSecurity(0),
        ),
        (
            plaintext(1, CHUNK_STREAM, 0x06, 1, &IPV4),
            PeerError::BadSecurity(6),
        ),
        (
            plaintext(1, CHUNK_STREAM, 0x03, 1, &[0, 80, 4, 1, 2, 3, 4]),
            PeerError::BadAddress(crate::address::AddressError::UnknownType(4)),
        ),
        // Padding length 15 announced, none present: the checksum is not where it says.
        (
            plaintext(1, CHUNK_STREAM, 0xf3, 3, &[]),
            PeerError::TruncatedHeader,
        ),
        // An address cut short by the end of the header.
        (
            plaintext(1, CHUNK_STREAM, 0x03, 1, &[0, 80, 2, 200, b'a']),
            PeerError::TruncatedHeader,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(error(accept(&forged(&h), NOW)), want);
    }
    let mut bad_sum = ok.clone();
    *bad_sum.last_mut().unwrap() ^= 1;
    assert_eq!(
        error(accept(&forged(&bad_sum), NOW)),
        PeerError::BadChecksum
    );
    // Header lengths out of range.
    let long = [ok.clone(), vec![0; MAX_HEADER_LEN]].concat();
    assert_eq!(
        error(accept(&forged(&long[..MAX_HEADER_LEN + 1]), NOW)),
        PeerError::Oversize {
            len: MAX_HEADER_LEN + 1,
            max: MAX_HEADER_LEN
        }
    );
    assert_eq!(
        error(accept(&forged(&ok[..41]), NOW)),
        PeerError::TruncatedHeader
    );
}

#[test]
fn bad_options() {
    // Padding without masking (v2ray refuses it too).
    let h = plaintext(1, CHUNK_STREAM | GLOBAL_PADDING, 0x03, 1, &IPV4);
    assert_eq!(
        error(accept(&forged(&h), NOW)),
        PeerError::BadOptions(CHUNK_STREAM | GLOBAL_PADDING)
    );
    // UDP with security none and no chunks: packets would have no boundaries.
    let h = plaintext(1, 0, 0x05, 2, &IPV4);
    assert_eq!(error(accept(&forged(&h), NOW)), PeerError::BadOptions(0));
}

#[test]
fn tampered_and_short_chunks() {
    for (security, options) in profiles() {
        if security == Security::None {
            continue;
        }
        let command = tcp();
        let (wire, mut up, _) = encode(&client(&command, security, options), NOW);
        let request = accept(&wire, NOW).unwrap();
        let chunk = vmess_seal(&mut up, b"hello");
        let mut bad = chunk.clone();
        *bad.last_mut().unwrap() ^= 1;
        // The last byte is the tag or (with padding) padding, which is not authenticated.
        if options & GLOBAL_PADDING == 0 {
            assert_eq!(
                error(feed_vmess_body(&mut request.opener(), &bad, 100)),
                PeerError::BadChunk,
                "{security:?} {options:#04x}"
            );
        }
        // A tampered length fails, or announces a chunk that never comes; it never opens.
        let mut bad = chunk.clone();
        bad[1] ^= 0x10;
        match feed_vmess_body(&mut request.opener(), &bad, usize::MAX) {
            Err(PeerError::BadChunk | PeerError::ShortChunk { .. }) => {}
            Ok(body) => assert!(body.chunks.is_empty() && body.left > 0),
            Err(other) => panic!("{other:?}"),
        }
    }
    // Plain lengths: a length below the tag.
    let command = tcp();
    let (wire, _, _) = encode(&client(&command, Security::Aes128Gcm, CHUNK_STREAM), NOW);
    let request = accept(&wire, NOW).unwrap();
    assert_eq!(
        error(feed_vmess_body(&mut request.opener(), &[0, 5, 1, 2, 3], 1)),
        PeerError::ShortChunk { len: 5, min: 16 }
    );
}

#[test]
fn user_table() {
    assert_eq!(
        VmessUsers::new([(1, uuid(1)), (2, uuid(1))]).err(),
        Some((2, ConfigError::DuplicateUser))
    );
    assert!(VmessUsers::new([]).unwrap().is_empty());
}
