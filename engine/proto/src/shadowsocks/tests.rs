//! Tests of the Shadowsocks codecs as a relay drives them: for every method, TCP sessions and UDP
//! exchanges (one user, several by trial decryption, several by identity headers), one test per
//! peer error, and known-answer vectors published by other implementations.

use std::ops::Range;

use base64::Engine as _;

use super::crypto::{identity_subkey, session_subkey};
use super::tcp::{
    ClientRequest, Handshake, Request, ServerHandshake, StreamOpener, StreamSealer, HEADROOM,
    MAX_PADDING,
};
use super::udp::{decode_client_packet, ClientPacket, UdpClient, UdpResponder, UDP_HEADROOM};
use super::*;
use crate::address::{AddressError, TargetAddr, MAX_ADDR_LEN};
use crate::fuzzing::{feed_handshake, feed_stream, forge_tcp_stream, forge_udp_packet};

const NOW: u64 = 1_700_000_000;

const AEAD_2017: [Method; 3] = [
    Method::Aes128Gcm,
    Method::Aes256Gcm,
    Method::Chacha20IetfPoly1305,
];
const SIP022: [Method; 3] = [
    Method::Blake3Aes128Gcm,
    Method::Blake3Aes256Gcm,
    Method::Blake3Chacha20Poly1305,
];
const WITH_IDENTITY: [Method; 2] = [Method::Blake3Aes128Gcm, Method::Blake3Aes256Gcm];

/// The ids the engine gives the test users: not their indices, so a mix-up shows.
const IDS: [UserId; 3] = [11, 22, 33];

/// Read sizes a relay may see: a byte at a time (every "need more" path), odd sizes, all at once.
const STEPS: [usize; 4] = [1, 7, 1000, usize::MAX];

const CLIENT_SESSION: u64 = 0xc11e_4750_0000_0001;
const SERVER_SESSION: u64 = 0x5e4e_e450_0000_0002;

/// An IPv4 target address, SOCKS5 form.
const IPV4: [u8; 7] = [0x01, 192, 0, 2, 1, 0, 80];

fn target() -> TargetAddr {
    TargetAddr::Domain("example.com".into(), 443)
}

fn udp_target() -> TargetAddr {
    TargetAddr::Ip("[2001:db8::53]:53".parse().unwrap())
}

pub(super) fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// SplitMix64 output: random-looking bytes that reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

fn random32(seed: u64) -> [u8; 32] {
    noise(seed, 32).try_into().unwrap()
}

/// Password of test user `n`: a base64 PSK for 2022 methods, a phrase otherwise.
fn password(method: Method, n: u8) -> String {
    if method.is_2022() {
        let raw: Vec<u8> = (0..method.key_len() as u8)
            .map(|i| i.wrapping_mul(37) ^ n)
            .collect();
        base64::engine::general_purpose::STANDARD.encode(raw)
    } else {
        format!("correct horse battery staple {n}")
    }
}

fn key(method: Method, n: u8) -> Key {
    Key::from_password(method, &password(method, n)).unwrap()
}

/// The error of a result whose success type has no `Debug`.
fn error<T>(result: Result<T, PeerError>) -> PeerError {
    match result {
        Ok(_) => panic!("expected a peer error"),
        Err(e) => e,
    }
}

#[test]
fn method_groups_match_the_methods() {
    assert!(AEAD_2017.iter().all(|m| !m.is_2022()));
    assert!(SIP022.iter().all(|m| m.is_2022()));
    let with_identity = Method::ALL
        .into_iter()
        .filter(|m| m.supports_identity_headers());
    assert!(with_identity.eq(WITH_IDENTITY));
    assert_eq!(AEAD_2017.len() + SIP022.len(), Method::ALL.len());
}

/// One inbound, and the keys its clients hold.
struct Inbound {
    method: Method,
    keys: UserKeys,
    users: Vec<Key>,
    identity: Option<Key>,
}

impl Inbound {
    /// `users` users (at most 3), with identity headers if asked and the method has them.
    fn new(method: Method, users: u8, identity: bool) -> Inbound {
        let server_psk =
            (identity && method.supports_identity_headers()).then(|| password(method, 0xee));
        let passwords: Vec<String> = (0..users).map(|n| password(method, n)).collect();
        let table = IDS.into_iter().zip(passwords.iter().map(String::as_str));
        let keys = UserKeys::new(method, server_psk.as_deref(), table)
            .ok()
            .unwrap();
        Inbound {
            method,
            keys,
            users: (0..users).map(|n| key(method, n)).collect(),
            identity: server_psk.map(|_| key(method, 0xee)),
        }
    }

    /// Every shape of inbound the method allows: one user and three, each by trial decryption
    /// and (AES 2022) by identity headers.
    fn all_shapes(method: Method) -> Vec<Inbound> {
        let identity = if method.supports_identity_headers() {
            &[false, true][..]
        } else {
            &[false]
        };
        let shapes = identity.iter().flat_map(|&i| [(1, i), (3, i)]);
        shapes
            .map(|(users, identity)| Inbound::new(method, users, identity))
            .collect()
    }

    /// The inbounds with three users.
    fn multi_user_shapes(method: Method) -> impl Iterator<Item = Inbound> {
        Inbound::all_shapes(method)
            .into_iter()
            .filter(|i| i.users.len() == 3)
    }

    fn salt(&self, seed: u64) -> Vec<u8> {
        noise(seed, self.method.salt_len())
    }

    fn request<'a>(
        &'a self,
        key: &'a Key,
        salt: &'a [u8],
        target: &'a TargetAddr,
    ) -> ClientRequest<'a> {
        ClientRequest {
            method: self.method,
            key,
            identity: self.identity.as_ref(),
            salt,
            target,
            padding: 0,
        }
    }

    /// A request of user `user` to [`target`], its salt made from `seed`: the bytes to send,
    /// the client's sealer and opener.
    fn send(
        &self,
        user: usize,
        seed: u64,
        payload: &[u8],
        now: u64,
    ) -> (Vec<u8>, StreamSealer, StreamOpener) {
        let (salt, target) = (self.salt(seed), target());
        encode(
            &self.request(&self.users[user], &salt, &target),
            payload,
            now,
        )
    }

    /// What the server answers a TCP request with, which must be an error.
    fn reject(&self, wire: &[u8]) -> PeerError {
        error(accept(&self.keys, wire, NOW))
    }

    /// What the server answers a UDP packet with, which must be an error.
    fn reject_packet(&self, packet: &[u8]) -> PeerError {
        udp_receive(&self.keys, packet, NOW, None).unwrap_err()
    }

    fn udp_client(&self, user: usize) -> UdpClient {
        UdpClient::new(
            self.method,
            self.users[user].clone(),
            self.identity.clone(),
            CLIENT_SESSION,
        )
    }
}

/// Runs `check` on every shape of inbound of every method.
fn for_every_inbound(mut check: impl FnMut(Method, &Inbound)) {
    for m in Method::ALL {
        for inbound in Inbound::all_shapes(m) {
            check(m, &inbound);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TCP

/// Encodes a client request; returns the bytes to send, the client's sealer and opener.
fn encode(
    request: &ClientRequest,
    payload: &[u8],
    now: u64,
) -> (Vec<u8>, StreamSealer, StreamOpener) {
    let room = 32 + 16 + 11 + MAX_ADDR_LEN + 2 + request.padding + payload.len() + 2 * TAG_LEN;
    let mut out = vec![0u8; room];
    let (n, sealer, opener) = request.encode(payload, now, &mut out);
    out.truncate(n);
    (out, sealer, opener)
}

/// Runs the server handshake over all of `wire` at once with a fresh salt filter; returns the
/// request and the buffer its ranges index.
fn accept(keys: &UserKeys, wire: &[u8], now: u64) -> Result<(Box<Request>, Vec<u8>), PeerError> {
    let mut buf = wire.to_vec();
    let whole = buf.len();
    let mut salts = SaltFilter::new(60, 1024);
    let (request, _) = feed_handshake(keys, &mut buf, whole, now, None, &mut salts)?
        .expect("a whole request completes the handshake");
    Ok((request, buf))
}

/// Seals `data` as one chunk; returns the bytes to send.
fn seal(sealer: &mut StreamSealer, data: &[u8], now: u64) -> Vec<u8> {
    let mut buf = vec![0u8; HEADROOM + data.len() + TAG_LEN];
    let payload = HEADROOM..HEADROOM + data.len();
    buf[payload.clone()].copy_from_slice(data);
    let sent = sealer.seal(&mut buf, payload, now);
    buf[sent].to_vec()
}

/// Opens a whole stream `step` bytes at a time; nothing may be left over.
fn open_all(
    opener: &mut StreamOpener,
    stream: &[u8],
    step: usize,
) -> Result<Vec<Vec<u8>>, PeerError> {
    let (chunks, left) = feed_stream(opener, stream, step, NOW)?;
    assert_eq!(left, 0, "bytes left unconsumed");
    Ok(chunks)
}

/// Chunks that a relay sends after the header: tiny, ordinary, and the largest allowed.
fn chunks(method: Method) -> Vec<Vec<u8>> {
    vec![
        vec![b'x'],
        noise(1, 1000),
        noise(2, method.max_chunk_payload()),
    ]
}

/// A whole TCP session of user `user` with the server, read `step` bytes at a time: request with
/// initial payload, then chunks each way, the largest allowed included.
fn tcp_session(inbound: &Inbound, user: usize, step: usize, hint: Option<UserId>) {
    let m = inbound.method;
    let initial = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let (wire, mut client_sealer, mut client_opener) =
        inbound.send(user, step as u64 ^ user as u64, initial, NOW);

    let mut buf = wire.clone();
    let mut salts = SaltFilter::new(60, 1024);
    let (mut request, fed) = feed_handshake(&inbound.keys, &mut buf, step, NOW, hint, &mut salts)
        .unwrap()
        .unwrap_or_else(|| panic!("{m}: the whole request was not enough"));
    assert_eq!(fed, wire.len(), "{m}: done before the whole header arrived");
    assert_eq!(request.user, IDS[user], "{m}");
    assert_eq!(request.target, target(), "{m}");
    assert_eq!(request.consumed, wire.len(), "{m}");
    assert_eq!(&buf[request.payload.clone()], initial, "{m}");

    let up = chunks(m);
    let stream: Vec<u8> = up
        .iter()
        .flat_map(|c| seal(&mut client_sealer, c, NOW))
        .collect();
    assert_eq!(
        open_all(&mut request.opener, &stream, step).unwrap(),
        up,
        "{m}"
    );

    let mut server_sealer = request.response_sealer(&inbound.salt(99));
    let down: Vec<Vec<u8>> = chunks(m).into_iter().rev().collect();
    let stream: Vec<u8> = down
        .iter()
        .flat_map(|c| seal(&mut server_sealer, c, NOW))
        .collect();
    assert_eq!(
        open_all(&mut client_opener, &stream, step).unwrap(),
        down,
        "{m}"
    );
}

#[test]
fn tcp_round_trip_every_method() {
    for m in Method::ALL {
        for step in STEPS {
            tcp_session(&Inbound::new(m, 1, true), 0, step, None);
        }
    }
}

#[test]
fn tcp_multi_user_every_method() {
    for m in Method::ALL {
        for inbound in Inbound::multi_user_shapes(m) {
            for user in 0..3 {
                for hint in [None, Some(IDS[user]), Some(IDS[(user + 1) % 3]), Some(999)] {
                    tcp_session(&inbound, user, usize::MAX, hint);
                }
            }
        }
    }
}

#[test]
fn identity_headers_only_for_aes_2022() {
    for m in Method::ALL {
        assert_eq!(
            Inbound::new(m, 3, true).keys.uses_identity_headers(),
            WITH_IDENTITY.contains(&m)
        );
    }
}

#[test]
fn trial_order_starts_with_the_hint() {
    let inbound = Inbound::new(Method::Aes128Gcm, 3, false);
    let order = |hint| {
        inbound
            .keys
            .trial_order(hint)
            .map(|u| u.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(order(None), [11, 22, 33]);
    assert_eq!(order(Some(33)), [33, 11, 22]);
    assert_eq!(order(Some(22)), [22, 11, 33]);
    assert_eq!(order(Some(999)), [11, 22, 33]);
}

/// Users changed one at a time, on every method with and without identity headers: a removed
/// user's key no longer opens, the others' still do, a key moves to a new user, a duplicate is
/// refused without changing the table, and a clone taken before is unaffected.
#[test]
fn users_change_one_at_a_time() {
    for m in Method::ALL {
        for mut inbound in Inbound::multi_user_shapes(m) {
            let shape = (m, inbound.identity.is_some());
            let before = inbound.keys.clone();
            let user = |keys: &UserKeys, user: usize| {
                let (wire, _, _) = inbound.send(user, 7, b"x", NOW);
                accept(keys, &wire, NOW).map(|(request, _)| request.user)
            };
            let mut keys = inbound.keys.clone();
            assert!(keys.remove(IDS[1]));
            assert!(!keys.remove(IDS[1]));
            assert_eq!(
                keys.insert(44, &password(m, 0)),
                Err(ConfigError::DuplicateKey),
                "{shape:?}"
            );
            assert_eq!(user(&keys, 0), Ok(IDS[0]), "{shape:?}");
            assert!(user(&keys, 1).is_err(), "{shape:?}");
            assert_eq!(user(&keys, 2), Ok(IDS[2]), "{shape:?}");
            keys.insert(44, &password(m, 1)).unwrap();
            assert_eq!(user(&keys, 1), Ok(44), "{shape:?}");
            assert_eq!((keys.len(), keys.contains(44)), (3, true));
            for (n, id) in IDS.into_iter().enumerate() {
                assert_eq!(user(&before, n), Ok(id), "{shape:?} before");
            }
            inbound.keys = keys;
            let packet = udp_send(&mut inbound.udp_client(1), b"ping", NOW);
            let got = udp_receive(&inbound.keys, &packet, NOW, None).map(|(p, _)| p.user);
            assert_eq!(got, Ok(44), "{shape:?} udp");
        }
    }
}

/// The request and the first chunk after it arrive in one read.
#[test]
fn tcp_chunk_in_the_same_read_as_the_header() {
    for m in Method::ALL {
        let inbound = Inbound::new(m, 1, false);
        let (mut wire, mut sealer, _) = inbound.send(0, 3, b"hi", NOW);
        let header_len = wire.len();
        wire.extend(seal(&mut sealer, b"more", NOW));
        let (mut request, buf) = accept(&inbound.keys, &wire, NOW).unwrap();
        assert_eq!(request.consumed, header_len, "{m}");
        let rest = &buf[request.consumed..];
        assert_eq!(
            open_all(&mut request.opener, rest, usize::MAX).unwrap(),
            [b"more"],
            "{m}"
        );
    }
}

/// The initial payload fills the header chunk to the method's limit.
#[test]
fn tcp_largest_initial_payload() {
    for m in Method::ALL {
        let inbound = Inbound::new(m, 1, false);
        let padding_len = if m.is_2022() { 2 } else { 0 };
        let payload = noise(
            5,
            m.max_chunk_payload() - target().encoded_len() - padding_len,
        );
        let (wire, _, _) = inbound.send(0, 4, &payload, NOW);
        let (request, buf) = accept(&inbound.keys, &wire, NOW).unwrap();
        assert_eq!(&buf[request.payload.clone()], &payload[..], "{m}");
    }
}

/// AEAD-2017 clients (ss-libev among them) may send the address alone in the first chunk.
#[test]
fn tcp_2017_request_without_payload() {
    for m in AEAD_2017 {
        let inbound = Inbound::new(m, 1, false);
        let (wire, _, _) = inbound.send(0, 6, b"", NOW);
        let (request, _) = accept(&inbound.keys, &wire, NOW).unwrap();
        assert!(request.payload.is_empty(), "{m}");
        assert_eq!(request.target, target(), "{m}");
    }
}

#[test]
fn tcp_2022_padding_only_request() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, true);
        let (target, salt) = (target(), inbound.salt(7));
        for padding in [1, MAX_PADDING] {
            let request = ClientRequest {
                padding,
                ..inbound.request(&inbound.users[0], &salt, &target)
            };
            let (wire, _, _) = encode(&request, b"", NOW);
            let (request, _) = accept(&inbound.keys, &wire, NOW).unwrap();
            assert!(request.payload.is_empty(), "{m}");
        }
    }
}

// TCP: what peers get wrong.

#[test]
fn tcp_random_bytes_are_bad_auth() {
    for_every_inbound(|m, inbound| {
        for seed in 0..16 {
            assert_eq!(inbound.reject(&noise(seed, 300)), PeerError::BadAuth, "{m}");
        }
    });
}

/// Every prefix of a valid request, truncated salt included, needs more and is never done.
#[test]
fn tcp_truncated_request_needs_more() {
    for_every_inbound(|m, inbound| {
        let (wire, _, _) = inbound.send(0, 8, b"x", NOW);
        for cut in 0..wire.len() {
            let mut salts = SaltFilter::new(60, 1024);
            let mut prefix = wire[..cut].to_vec();
            let outcome =
                ServerHandshake::new().advance(&inbound.keys, &mut prefix, NOW, None, &mut salts);
            assert!(
                matches!(outcome, Ok(Handshake::NeedMore)),
                "{m}: cut at {cut}"
            );
        }
    });
}

#[test]
fn tcp_wrong_key_is_bad_auth() {
    for_every_inbound(|m, inbound| {
        let (target, salt, stranger) = (target(), inbound.salt(9), key(m, 77));
        let (wire, _, _) = encode(&inbound.request(&stranger, &salt, &target), b"x", NOW);
        assert_eq!(inbound.reject(&wire), PeerError::BadAuth, "{m}");
    });
}

/// A known user behind the wrong server PSK, or without an identity header at all.
#[test]
fn tcp_wrong_identity_is_bad_auth() {
    for m in WITH_IDENTITY {
        let inbound = Inbound::new(m, 3, true);
        let (target, salt, wrong_psk) = (target(), inbound.salt(10), key(m, 0xdd));
        for identity in [Some(&wrong_psk), None] {
            let request = ClientRequest {
                identity,
                ..inbound.request(&inbound.users[1], &salt, &target)
            };
            let (wire, _, _) = encode(&request, b"x", NOW);
            assert_eq!(inbound.reject(&wire), PeerError::BadAuth, "{m}");
        }
    }
}

#[test]
fn tcp_replayed_salt_is_rejected() {
    for_every_inbound(|m, inbound| {
        let (wire, _, _) = inbound.send(0, 11, b"x", NOW);
        let mut salts = SaltFilter::new(60, 1024);
        let whole = wire.len();
        let first = feed_handshake(
            &inbound.keys,
            &mut wire.clone(),
            whole,
            NOW,
            None,
            &mut salts,
        );
        assert!(matches!(first, Ok(Some(_))), "{m}");
        let again = feed_handshake(
            &inbound.keys,
            &mut wire.clone(),
            whole,
            NOW + 1,
            None,
            &mut salts,
        );
        assert_eq!(error(again), PeerError::Replay, "{m}");
    });
}

#[test]
fn tcp_2022_stale_timestamp() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, true);
        for sent in [NOW - 31, NOW + 31] {
            let (wire, _, _) = inbound.send(0, 12, b"x", sent);
            assert_eq!(
                inbound.reject(&wire),
                PeerError::StaleTimestamp {
                    got: sent,
                    now: NOW
                },
                "{m}"
            );
        }
        for sent in [NOW - 30, NOW + 30] {
            let (wire, _, _) = inbound.send(0, 12, b"x", sent);
            assert!(accept(&inbound.keys, &wire, NOW).is_ok(), "{m}");
        }
    }
}

#[test]
fn tcp_2022_stale_response_timestamp() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, true);
        for sent in [NOW - 31, NOW + 31] {
            let (wire, _, mut client_opener) = inbound.send(0, 13, b"x", NOW);
            let (request, _) = accept(&inbound.keys, &wire, NOW).unwrap();
            let response = seal(&mut request.response_sealer(&inbound.salt(14)), b"y", sent);
            let got = error(open_all(&mut client_opener, &response, usize::MAX));
            assert_eq!(
                got,
                PeerError::StaleTimestamp {
                    got: sent,
                    now: NOW
                },
                "{m}"
            );
        }
    }
}

#[test]
fn tcp_2022_empty_request() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, true);
        let (wire, _, _) = inbound.send(0, 15, b"", NOW);
        assert_eq!(inbound.reject(&wire), PeerError::EmptyRequest, "{m}");
    }
}

/// The plaintext of a 2022 fixed request header.
fn fixed_header(kind: u8, ts: u64, len: usize) -> Vec<u8> {
    [&[kind][..], &ts.to_be_bytes(), &(len as u16).to_be_bytes()].concat()
}

/// A request from `inbound`'s first user whose header chunk carries exactly `body` (address
/// onward), framed by a valid length (2017) or a fixed header of type `kind` (2022). No
/// identity header.
fn forged_request(inbound: &Inbound, kind: u8, body: &[u8]) -> Vec<u8> {
    let m = inbound.method;
    let first = if m.is_2022() {
        fixed_header(kind, NOW, body.len())
    } else {
        (body.len() as u16).to_be_bytes().to_vec()
    };
    forge_tcp_stream(m, &inbound.users[0], &inbound.salt(16), &[&first, body])
}

#[test]
fn tcp_oversize_length_is_rejected() {
    let want = PeerError::Oversize {
        len: 0x4000,
        max: 0x3FFF,
    };
    for m in AEAD_2017 {
        let inbound = Inbound::new(m, 1, false);
        // The header chunk, one byte over.
        let (wire, _, _) = inbound.send(0, 17, &noise(18, 0x4000 - target().encoded_len()), NOW);
        assert_eq!(inbound.reject(&wire), want, "{m}");
        // A later chunk.
        let len = |n: u16| n.to_be_bytes();
        let wire = forge_tcp_stream(
            m,
            &inbound.users[0],
            &inbound.salt(17),
            &[&len(7), &IPV4, &len(0x4000)],
        );
        let (mut request, buf) = accept(&inbound.keys, &wire, NOW).unwrap();
        let rest = &buf[request.consumed..];
        assert_eq!(
            error(open_all(&mut request.opener, rest, usize::MAX)),
            want,
            "{m}"
        );
    }
    // 2022 chunk lengths are u16 and the limit is 0xFFFF: only the padding can be oversize.
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, false);
        let (target, salt) = (target(), inbound.salt(19));
        let request = ClientRequest {
            padding: MAX_PADDING + 1,
            ..inbound.request(&inbound.users[0], &salt, &target)
        };
        let (wire, _, _) = encode(&request, b"x", NOW);
        let want = PeerError::Oversize {
            len: MAX_PADDING + 1,
            max: MAX_PADDING,
        };
        assert_eq!(inbound.reject(&wire), want, "{m}");
    }
}

#[test]
fn tcp_2022_bad_header_type() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, false);
        let body = [&IPV4[..], &[0, 0], b"x"].concat();
        for kind in [1, 2, 0xff] {
            let wire = forged_request(&inbound, kind, &body);
            assert_eq!(inbound.reject(&wire), PeerError::BadHeaderType(kind), "{m}");
        }
    }
}

/// A response whose header carries the request type (0) instead of the response type (1).
#[test]
fn tcp_2022_response_with_request_type() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, false);
        let (_, _, mut client_opener) = inbound.send(0, 20, b"x", NOW);
        let header = [
            &[0][..],
            &NOW.to_be_bytes(),
            &inbound.salt(20),
            &1u16.to_be_bytes(),
        ]
        .concat();
        let response = forge_tcp_stream(m, &inbound.users[0], &inbound.salt(21), &[&header, b"y"]);
        let got = error(open_all(&mut client_opener, &response, usize::MAX));
        assert_eq!(got, PeerError::BadHeaderType(0), "{m}");
    }
}

/// SIP022 responses echo the request salt: a response to another request does not open.
#[test]
fn tcp_2022_response_is_bound_to_its_request() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, true);
        let (wire_a, _, _) = inbound.send(0, 22, b"a", NOW);
        let (_, _, mut opener_b) = inbound.send(0, 23, b"b", NOW);
        let (request_a, _) = accept(&inbound.keys, &wire_a, NOW).unwrap();
        let response = seal(&mut request_a.response_sealer(&inbound.salt(24)), b"y", NOW);
        assert_eq!(
            error(open_all(&mut opener_b, &response, usize::MAX)),
            PeerError::BadAuth,
            "{m}"
        );
    }
}

#[test]
fn tcp_bad_address_in_header() {
    let cases: [(&[u8], PeerError); 6] = [
        (&[0x01, 10, 0, 0], PeerError::TruncatedHeader),
        (&[0x04, 0, 0, 0, 0, 0, 0], PeerError::TruncatedHeader),
        (&[0x03, 20, b'a', b'b'], PeerError::TruncatedHeader),
        (&[0x03], PeerError::TruncatedHeader),
        (
            &[0x07, 1, 2, 3],
            PeerError::BadAddress(AddressError::UnknownType(7)),
        ),
        (
            &[0x03, 0, 0, 80],
            PeerError::BadAddress(AddressError::BadDomain),
        ),
    ];
    for m in Method::ALL {
        let inbound = Inbound::new(m, 1, false);
        for (address, want) in &cases {
            let wire = forged_request(&inbound, 0, address);
            assert_eq!(&inbound.reject(&wire), want, "{m}: {address:?}");
        }
    }
}

#[test]
fn tcp_2022_bad_padding_in_header() {
    let with_padding =
        |len: u16, have: usize| [&IPV4[..], &len.to_be_bytes(), &vec![0; have]].concat();
    let cases = [
        (IPV4.to_vec(), PeerError::TruncatedHeader),
        ([&IPV4[..], &[0]].concat(), PeerError::TruncatedHeader),
        (with_padding(10, 5), PeerError::TruncatedHeader),
        (
            with_padding(901, 901),
            PeerError::Oversize {
                len: 901,
                max: MAX_PADDING,
            },
        ),
    ];
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, false);
        for (body, want) in &cases {
            assert_eq!(
                &inbound.reject(&forged_request(&inbound, 0, body)),
                want,
                "{m}"
            );
        }
    }
}

#[test]
fn tcp_zero_length_header_is_truncated() {
    for m in Method::ALL {
        let inbound = Inbound::new(m, 1, false);
        assert_eq!(
            inbound.reject(&forged_request(&inbound, 0, b"")),
            PeerError::TruncatedHeader,
            "{m}"
        );
    }
}

/// One flipped bit: in the header (bad auth), in a later chunk (bad chunk), in the response.
#[test]
fn tcp_tampered_bytes_are_rejected() {
    for m in Method::ALL {
        let inbound = Inbound::new(m, 1, true);
        let (mut wire, mut sealer, mut client_opener) = inbound.send(0, 26, b"x", NOW);
        *wire.last_mut().unwrap() ^= 1;
        assert_eq!(inbound.reject(&wire), PeerError::BadAuth, "{m}");
        *wire.last_mut().unwrap() ^= 1;

        let (mut request, _) = accept(&inbound.keys, &wire, NOW).unwrap();
        let mut chunk = seal(&mut sealer, b"payload", NOW);
        chunk[20] ^= 1;
        assert_eq!(
            error(open_all(&mut request.opener, &chunk, usize::MAX)),
            PeerError::BadChunk,
            "{m}"
        );

        let mut response_sealer = request.response_sealer(&inbound.salt(27));
        let mut first = seal(&mut response_sealer, b"one", NOW);
        let mut second = seal(&mut response_sealer, b"two", NOW);
        *second.last_mut().unwrap() ^= 1;
        assert_eq!(
            open_all(&mut client_opener, &first, usize::MAX).unwrap(),
            [b"one"],
            "{m}"
        );
        assert_eq!(
            error(open_all(&mut client_opener, &second, usize::MAX)),
            PeerError::BadChunk,
            "{m}"
        );

        let (_, _, mut fresh_opener) = inbound.send(0, 26, b"x", NOW);
        first[m.salt_len() + 1] ^= 1;
        assert_eq!(
            error(open_all(&mut fresh_opener, &first, usize::MAX)),
            PeerError::BadAuth,
            "{m}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// UDP

/// Seals `payload` with `encode` (a client's or a responder's), leaving the headroom and tag
/// room both need; returns the packet.
fn sealed_packet(
    payload: &[u8],
    encode: impl FnOnce(&mut [u8], Range<usize>) -> Range<usize>,
) -> Vec<u8> {
    let mut buf = vec![0u8; UDP_HEADROOM + payload.len() + TAG_LEN];
    let range = UDP_HEADROOM..UDP_HEADROOM + payload.len();
    buf[range.clone()].copy_from_slice(payload);
    let sent = encode(&mut buf, range);
    buf[sent].to_vec()
}

fn udp_send(client: &mut UdpClient, payload: &[u8], now: u64) -> Vec<u8> {
    let random = random32(payload.len() as u64 ^ now);
    sealed_packet(payload, |buf, range| {
        client.encode(buf, range, &udp_target(), now, &random)
    })
}

fn udp_reply(responder: &mut UdpResponder, payload: &[u8], now: u64) -> Vec<u8> {
    let random = random32(payload.len() as u64 ^ now ^ 1);
    sealed_packet(payload, |buf, range| {
        responder.encode(buf, range, &udp_target(), now, &random)
    })
}

/// The server's decoding of `packet`, and the buffer its payload range indexes.
fn udp_receive(
    keys: &UserKeys,
    packet: &[u8],
    now: u64,
    hint: Option<UserId>,
) -> Result<(ClientPacket, Vec<u8>), PeerError> {
    let mut buf = packet.to_vec();
    let mut scratch = vec![0u8; buf.len()];
    let decoded = decode_client_packet(keys, &mut buf, now, hint, &mut scratch)?;
    Ok((decoded, buf))
}

fn responder(inbound: &Inbound, user: usize) -> UdpResponder {
    let client_session = inbound.method.is_2022().then_some(CLIENT_SESSION);
    UdpResponder::new(&inbound.keys, IDS[user], client_session, SERVER_SESSION).unwrap()
}

/// Packets of user `user` to the server (empty, then large) and replies back.
fn udp_exchange(inbound: &Inbound, user: usize, hint: Option<UserId>) {
    let m = inbound.method;
    let mut client = inbound.udp_client(user);
    for (packet_id, payload) in [noise(30, 0), noise(31, 1400)].iter().enumerate() {
        let packet = udp_send(&mut client, payload, NOW);
        let (decoded, buf) = udp_receive(&inbound.keys, &packet, NOW, hint).unwrap();
        assert_eq!(decoded.user, IDS[user], "{m}");
        assert_eq!(decoded.target, udp_target(), "{m}");
        assert_eq!(&buf[decoded.payload.clone()], &payload[..], "{m}");
        let session = m.is_2022().then_some((CLIENT_SESSION, packet_id as u64));
        assert_eq!(decoded.session, session, "{m}");
    }
    let mut responder = responder(inbound, user);
    for reply in [noise(32, 512), noise(33, 0)] {
        let mut packet = udp_reply(&mut responder, &reply, NOW);
        let (source, payload) = client.decode(&mut packet, NOW).unwrap();
        assert_eq!(source, udp_target(), "{m}");
        assert_eq!(&packet[payload], &reply[..], "{m}");
    }
}

#[test]
fn udp_round_trip_every_method() {
    for m in Method::ALL {
        udp_exchange(&Inbound::new(m, 1, true), 0, None);
    }
}

#[test]
fn udp_multi_user_every_method() {
    for m in Method::ALL {
        for inbound in Inbound::multi_user_shapes(m) {
            for user in 0..3 {
                for hint in [None, Some(IDS[user]), Some(IDS[(user + 2) % 3]), Some(999)] {
                    udp_exchange(&inbound, user, hint);
                }
            }
        }
    }
}

#[test]
fn udp_responder_for_unknown_user() {
    let inbound = Inbound::new(Method::Blake3Aes128Gcm, 3, true);
    assert!(UdpResponder::new(&inbound.keys, 999, Some(1), 2).is_none());
}

// UDP: what peers get wrong.

/// Every length below the smallest packet the method can carry is a short packet, on both
/// sides; at that length, garbage is bad auth.
#[test]
fn udp_short_packets() {
    for_every_inbound(|m, inbound| {
        let eih = if inbound.identity.is_some() { 16 } else { 0 };
        // Smallest bodies: an address type byte (2017); type, timestamp, [client session
        // id,] padding length (2022).
        let (smallest_request, smallest_response) = match m {
            Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm => {
                (16 + eih + 11 + TAG_LEN, 16 + 19 + TAG_LEN)
            }
            Method::Blake3Chacha20Poly1305 => (24 + 16 + 11 + TAG_LEN, 24 + 16 + 19 + TAG_LEN),
            _ => (m.salt_len() + 1 + TAG_LEN, m.salt_len() + 1 + TAG_LEN),
        };
        let packet = noise(34, smallest_request);
        for len in 0..smallest_request {
            assert_eq!(
                inbound.reject_packet(&packet[..len]),
                PeerError::ShortPacket,
                "{m}: {len} bytes"
            );
        }
        assert_eq!(inbound.reject_packet(&packet), PeerError::BadAuth, "{m}");

        let client = inbound.udp_client(0);
        let packet = noise(35, smallest_response);
        for len in 0..smallest_response {
            let got = client.decode(&mut packet[..len].to_vec(), NOW).unwrap_err();
            assert_eq!(got, PeerError::ShortPacket, "{m}: {len} bytes");
        }
        assert_eq!(
            client.decode(&mut packet.clone(), NOW).unwrap_err(),
            PeerError::BadAuth,
            "{m}"
        );
    });
}

#[test]
fn udp_random_bytes_are_bad_auth() {
    for_every_inbound(|m, inbound| {
        for seed in 0..16 {
            assert_eq!(
                inbound.reject_packet(&noise(seed, 200)),
                PeerError::BadAuth,
                "{m}"
            );
        }
    });
}

#[test]
fn udp_wrong_key_is_bad_auth() {
    for_every_inbound(|m, inbound| {
        let mut stranger = UdpClient::new(m, key(m, 77), inbound.identity.clone(), CLIENT_SESSION);
        let packet = udp_send(&mut stranger, b"ping", NOW);
        assert_eq!(inbound.reject_packet(&packet), PeerError::BadAuth, "{m}");
    });
}

/// A known user behind the wrong server PSK, or without an identity header at all.
#[test]
fn udp_wrong_identity_is_bad_auth() {
    for m in WITH_IDENTITY {
        let inbound = Inbound::new(m, 3, true);
        for identity in [Some(key(m, 0xdd)), None] {
            let mut client = UdpClient::new(m, inbound.users[1].clone(), identity, CLIENT_SESSION);
            let packet = udp_send(&mut client, b"ping", NOW);
            assert_eq!(inbound.reject_packet(&packet), PeerError::BadAuth, "{m}");
        }
    }
}

#[test]
fn udp_tampered_packet_is_bad_auth() {
    for_every_inbound(|m, inbound| {
        let mut packet = udp_send(&mut inbound.udp_client(0), b"ping", NOW);
        *packet.last_mut().unwrap() ^= 0x80;
        assert_eq!(inbound.reject_packet(&packet), PeerError::BadAuth, "{m}");
    });
}

#[test]
fn udp_2022_stale_timestamp() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, true);
        let (mut client, mut responder) = (inbound.udp_client(0), responder(&inbound, 0));
        for sent in [NOW - 31, NOW + 31] {
            let want = PeerError::StaleTimestamp {
                got: sent,
                now: NOW,
            };
            assert_eq!(
                inbound.reject_packet(&udp_send(&mut client, b"ping", sent)),
                want,
                "{m}"
            );
            let mut reply = udp_reply(&mut responder, b"pong", sent);
            assert_eq!(client.decode(&mut reply, NOW).unwrap_err(), want, "{m}");
        }
        for sent in [NOW - 30, NOW + 30] {
            let packet = udp_send(&mut client, b"ping", sent);
            assert!(
                udp_receive(&inbound.keys, &packet, NOW, None).is_ok(),
                "{m}"
            );
        }
    }
}

/// Without identity headers a 2022 server packet is sealed like a client packet; only the
/// header type tells them apart, in both directions.
#[test]
fn udp_2022_packet_in_the_wrong_direction() {
    for m in SIP022 {
        let inbound = Inbound::new(m, 1, false);
        let (mut client, mut responder) = (inbound.udp_client(0), responder(&inbound, 0));
        let reply = udp_reply(&mut responder, b"pong", NOW);
        assert_eq!(
            inbound.reject_packet(&reply),
            PeerError::BadHeaderType(1),
            "{m}"
        );
        let mut request = udp_send(&mut client, b"ping with enough bytes", NOW);
        assert_eq!(
            client.decode(&mut request, NOW).unwrap_err(),
            PeerError::BadHeaderType(0),
            "{m}"
        );
    }
}

#[test]
fn udp_bad_body() {
    let unknown_type = PeerError::BadAddress(AddressError::UnknownType(9));
    let head =
        |kind: u8, padding: u16| [&[kind][..], &NOW.to_be_bytes(), &padding.to_be_bytes()].concat();
    let cases_2022 = [
        (head(0, 0), PeerError::TruncatedHeader),
        (
            [head(0, 0), vec![0x01, 10, 0]].concat(),
            PeerError::TruncatedHeader,
        ),
        (
            [head(0, 50), vec![0; 10]].concat(),
            PeerError::TruncatedHeader,
        ),
        (
            [head(0, 0), vec![0x09, 0, 0]].concat(),
            unknown_type.clone(),
        ),
        (
            [head(2, 0), IPV4.to_vec()].concat(),
            PeerError::BadHeaderType(2),
        ),
    ];
    let cases_2017 = [
        (vec![0x03, 10, b'a'], PeerError::TruncatedHeader),
        (vec![0x09], unknown_type),
    ];
    for m in Method::ALL {
        let inbound = Inbound::new(m, 1, false);
        for (body, want) in if m.is_2022() {
            &cases_2022[..]
        } else {
            &cases_2017[..]
        } {
            let packet = forge_udp_packet(m, &inbound.users[0], body);
            assert_eq!(&inbound.reject_packet(&packet), want, "{m}: {body:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration

#[test]
fn method_names_round_trip() {
    for m in Method::ALL {
        assert_eq!(m.name().parse::<Method>(), Ok(m));
        assert_eq!(m.to_string(), m.name());
    }
    assert_eq!(
        "rc4-md5".parse::<Method>(),
        Err(ConfigError::UnknownMethod("rc4-md5".into()))
    );
}

#[test]
fn user_keys_reject_bad_configuration() {
    let psk = password(Method::Blake3Aes256Gcm, 1);
    for m in [Method::Aes256Gcm, Method::Blake3Chacha20Poly1305] {
        let got = UserKeys::new(m, Some(&psk), [(1, psk.as_str())]).err();
        assert_eq!(got, Some((None, ConfigError::NoIdentityHeaders(m.name()))));
    }
    let m = Method::Blake3Aes128Gcm;
    let (a, b) = (password(m, 1), password(m, 2));
    let key_length = |got| ConfigError::KeyLength {
        method: m.name(),
        want: 16,
        got,
    };
    let got = UserKeys::new(m, None, [(1, a.as_str()), (2, b.as_str()), (3, a.as_str())]).err();
    assert_eq!(got, Some((Some(3), ConfigError::DuplicateKey)));
    let got = UserKeys::new(m, None, [(1, a.as_str()), (2, psk.as_str())]).err();
    assert_eq!(got, Some((Some(2), key_length(32))));
    let got = UserKeys::new(m, Some("AAAA"), [(1, a.as_str())]).err();
    assert_eq!(got, Some((None, key_length(3))));
}

// ---------------------------------------------------------------------------------------------
// Known-answer vectors published by other implementations. None of the reference
// implementations (shadowsocks-rust, shadowsocks-crypto, sing-shadowsocks, outline-ss-server)
// publishes fixed-input vectors for these; these come from independent implementations whose
// own tests pin them.

/// EVP_BytesToKey (MD5) of a mixed ASCII and UTF-8 password. Source: Shadowsocks.Net
/// (github.com/HMBSbige/Shadowsocks.Net), UnitTest/DeriveKeyTest.cs.
#[test]
fn vector_evp_bytes_to_key() {
    let password = "123中1文da18测)试abc!#$@(";
    let want = hex("8c5ea5e7ade3b3133a479e6aff0506dd7952bf75984a26722070cd9e44a09353");
    assert_eq!(
        Key::from_password(Method::Aes256Gcm, password)
            .unwrap()
            .as_bytes(),
        &want[..]
    );
    assert_eq!(
        Key::from_password(Method::Aes128Gcm, password)
            .unwrap()
            .as_bytes(),
        &want[..16]
    );
}

/// Whole AEAD-2017 TCP streams (salt, then length and payload chunks) sealed by Shadowsocks.Net
/// under the password "密码". Source: github.com/HMBSbige/Shadowsocks.Net,
/// UnitTest/AEADShadowsocksCryptoTest.cs. Opened here by the client-side stream opener, which
/// reads a response stream exactly as the server reads a request stream after the salt.
#[test]
fn vector_aead_2017_streams() {
    const ORIGIN: &str = "Glib jocks quiz nymph to vex dwarf.1145141919810!这是原文！";
    const ORIGIN2: &str = "这是原文";
    let cases = [
        (Method::Aes128Gcm, ORIGIN, "9b0006e19ff614e5eb44a5c9190268d243b5356463c8760d52db2dcb4ca3cd00747f4237ba8e94d3e498e0d8101d7610752766785190b9a869d3aee3db4db5411eea5a6b0e16d1bbd469bfab72a8cc6745a70b71472ec76aa189363cf5d71d98f46a6dbde1acca5de7083c8e27dc386daa6c460540eea8f0d223e8d890d34f45cd5b912b7fcfc3cc20156d1cbbd3066e5cadce99"),
        (Method::Aes128Gcm, ORIGIN2, "c3b3e419f8de8c2d4701d94f5258915a967bf7b27a9e97e4cee0c00d67caa7c992f4f41d83109f0a9a6710871501b64851ffa1588c0603c168e00a4ac50b4d729203aecfddd1475b78e338bfe943662fe25f2fe49afc1f5eb00389113d417e5e"),
        (Method::Aes256Gcm, ORIGIN, "4fb44de9876054b81d156438024560fc0ef0118e294eb0950490acc0f2083595ba06df583bafcb96e7ac2916e7d064cc1f8e687aba688cb29e500cef11cb91223c17d62e0f8b7bc15d2ff7a18658f30e4e1b66a80cb3f70cfa110fceaa2c50a2271d533f3c15ba427a9ebf96cc7f0426d79c85e6dfbd3c7b26cd2a663629125feafe65659942d0fe29945e3a80b6a7e253bb400c7f0f0fcad0eb3e455d66d178af51f51a"),
        (Method::Aes256Gcm, ORIGIN2, "5648a2d3e86fe68d7c137ad894294f8e8b57ce55eb545cb7da69b93708e2a689a4a8798171d001ed9ef8d3e1b1c89d862604ce7e0803584719ea65e0c4025800187a0e0a2c5408519e93b2279358fb81842e9c913a76ee93ee25d4ddbfb4729fcc64411054411a01a4ada4f22c5e401e"),
        (Method::Chacha20IetfPoly1305, ORIGIN, "8094ac0782801abeb1e60778767df9b4310cacf43d6e52f19371e19fcc7716dd5ccf2b739de27db535ab0571ebeb2b30a3652ffedfaa77d47d9a97f21b015d056902d4aa198cc2e5588a8dddd36a8abd9dd3154c3837e86cf36f6471eead1166ed485cd4da93fd7caa27be5682788cf61e36371ab700803e18633b1011dd08df6553df8b7e5adc7bfc6c2f58b531039b044437f74f86a739dc70410f5db04b387988cc8e"),
        (Method::Chacha20IetfPoly1305, ORIGIN2, "8bd996a259f861d54c4b27e740a6ad23381631dae3ab69e5c0377625752fa0f5dc68c4ae6a4c6b2c4f6bdda92ffad4e11fbf5b63bf05809d419cd0b562e927b370c627f14f42b18e146c832bfb6e6bd1f58cc71333ac60943d5592a8f8148687d6008defd21c791fc199efe26dc136e5"),
    ];
    for (m, plain, stream) in cases {
        for step in STEPS {
            let mut opener = client_opener(m, "密码");
            let chunks = open_all(&mut opener, &hex(stream), step).unwrap();
            assert_eq!(chunks.concat(), plain.as_bytes(), "{m}");
        }
    }
}

/// A stream whose first length chunk authenticates but announces 0x4000 bytes, one over the
/// AEAD-2017 limit. Source: Shadowsocks.Net, same file, "Received wrong payload length".
#[test]
fn vector_aead_2017_oversize_length() {
    let stream = hex("9fe197e9b49097273bd814f2955f2056527fcedc730b1c28b37f37520900ad518fb91bd61e4b8226cdb5a69109c713e2c37db1ffb980b09aafc3a56857df3eec3cb3b10edd9aa8e257851cff2250d4cbc952cf9c5103e8311c4e9b18fa68e0734716294747c1abcc906be8a0ce33d41438795cd682cdf7b4e1949b398656543ca03ed7af3cfbcb6700646c241baa3bb39a3f175f5d127d27649876cb055d8b271f48a5abeead43ad5f9d9ac2d47b12997fa8d45f4c370dd49b683c772b30ed092f6326980c5c");
    let mut opener = client_opener(Method::Aes128Gcm, "密码");
    let got = error(open_all(&mut opener, &stream, usize::MAX));
    assert_eq!(
        got,
        PeerError::Oversize {
            len: 0x4000,
            max: 0x3FFF
        }
    );
}

/// An opener for a response stream to a client holding `password`.
fn client_opener(method: Method, password: &str) -> StreamOpener {
    let key = Key::from_password(method, password).unwrap();
    let (salt, target) = (vec![0; method.salt_len()], target());
    let request = ClientRequest {
        method,
        key: &key,
        identity: None,
        salt: &salt,
        target: &target,
        padding: 1,
    };
    encode(&request, b"", NOW).2
}

/// SIP022 session subkey, `BLAKE3-derive_key("shadowsocks 2022 session subkey", PSK || salt)`,
/// for a 32-byte PSK. Source: urban-spork (github.com/Zmax0/urban-spork),
/// urban-spork-test/.../shadowsocks/aead/AEAD2022TestCase.java, `testSessionSubkey`.
#[test]
fn vector_2022_session_subkey() {
    let psk = "Lc3tTx0BY6ZJ/fCwOx3JvF0I/anhwJBO5p2+FA5Vce4=";
    let salt = b64("3oFO0VyLyGI4nFN0M9P+62vPND/L6v8IingaPJWTbJA=");
    let want = b64("EdNE+4U8dVnHT0+poAFDK2bdlwfrHT61sUNr9WYPh+E=");
    for m in [Method::Blake3Aes256Gcm, Method::Blake3Chacha20Poly1305] {
        let key = Key::from_base64(m, psk).unwrap();
        assert_eq!(&session_subkey(m, &key, &salt)[..], &want[..], "{m}");
    }
}

/// SIP023 identity subkey context, `BLAKE3-derive_key("shadowsocks 2022 identity subkey", ...)`
/// over a 49-byte input, here split into a 32-byte iPSK and a 17-byte rest (the function hashes
/// their concatenation). Source: urban-spork, same file, `testBlake3`.
#[test]
fn vector_2022_identity_subkey() {
    let input = b"Personal search-enabled assistant for programmers";
    let want = b64("nb91ZIjdNzFcPmGRS3Lg7m+muVqat549+RSDluyVN4c=");
    let ipsk = Key::from_bytes(&input[..32]);
    let got = identity_subkey(Method::Blake3Aes256Gcm, &ipsk, &input[32..]);
    assert_eq!(&got[..], &want[..]);
}

// ---------------------------------------------------------------------------------------------
// Fuzz entry points

/// Every entry point under `fuzz/` survives garbage of every short length (the fuzzers run
/// them for real; this keeps them working under `cargo test`).
#[test]
fn fuzz_entry_points_survive_garbage() {
    use crate::fuzzing as f;
    let entry_points: [fn(&[u8]); 9] = [
        f::target_addr,
        f::tcp_handshake_2017,
        f::tcp_handshake_2022,
        f::tcp_header_2017,
        f::tcp_header_2022,
        f::tcp_stream,
        f::udp_2017,
        f::udp_2022_aes,
        f::udp_2022_chacha,
    ];
    for entry_point in entry_points {
        for len in 0..160 {
            entry_point(&noise(len as u64, len));
        }
    }
}
