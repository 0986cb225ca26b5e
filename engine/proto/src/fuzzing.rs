//! Entry points for the fuzz targets under `fuzz/`: each target is one call to a function here.
//!
//! Every entry point takes arbitrary bytes and must never panic; it also asserts the invariants a
//! relay relies on (ranges inside the buffer, nothing consumed that was not received).
//!
//! Arbitrary bytes almost never get past an AEAD tag, so a raw-bytes target only reaches the
//! code in front of the tag. The `*_header_*` targets and the forging mode of the UDP targets
//! seal the fuzzer's bytes under a known key first ([`forge_tcp_stream`], [`forge_udp_packet`]),
//! which puts the parsers behind the tag in reach.
//!
//! The relay simulations ([`feed_handshake`], [`feed_stream`]) and the forging helpers are also
//! what the unit tests use.

use std::sync::OnceLock;

use crate::address::{Parsed, TargetAddr, MAX_ADDR_LEN};
use crate::shadowsocks::crypto::{session_subkey, BlockCipher, SessionCipher, XChaCha};
use crate::shadowsocks::replay::SaltCheck;
use crate::shadowsocks::tcp::{
    ClientRequest, Handshake, Opened, Request, ServerHandshake, StreamOpener,
};
use crate::shadowsocks::udp::{decode_client_packet, UdpClient};
use crate::shadowsocks::{Key, Method, PeerError, SaltFilter, UserId, UserKeys, TAG_LEN};

/// The server clock every entry point runs at (Unix seconds).
pub const NOW: u64 = 1_700_000_000;

/// Feeds `wire` to a fresh handshake `step` bytes at a time, as a relay reading a socket would.
///
/// `Ok(None)`: all of `wire` was fed and the handshake still needs more. Otherwise the request
/// (its ranges index `wire`) and how many bytes had been fed when it completed.
pub fn feed_handshake(
    keys: &UserKeys,
    wire: &mut [u8],
    step: usize,
    now: u64,
    hint: Option<UserId>,
    salts: &mut dyn SaltCheck,
) -> Result<Option<(Box<Request>, usize)>, PeerError> {
    let mut handshake = ServerHandshake::new();
    let mut fed = 0;
    loop {
        fed = (fed + step.max(1)).min(wire.len());
        if let Handshake::Done(request) =
            handshake.advance(keys, &mut wire[..fed], now, hint, salts)?
        {
            let Request {
                payload, consumed, ..
            } = &*request;
            assert!(payload.start <= payload.end && payload.end <= *consumed && *consumed <= fed);
            return Ok(Some((request, fed)));
        }
        if fed == wire.len() {
            return Ok(None);
        }
    }
}

/// Feeds `stream` to `opener` `step` bytes at a time, dropping each chunk from the head of the
/// receive buffer once it is opened, as a relay does. Returns every chunk's plaintext and how
/// many received bytes are left unconsumed.
pub fn feed_stream(
    opener: &mut StreamOpener,
    stream: &[u8],
    step: usize,
    now: u64,
) -> Result<(Vec<Vec<u8>>, usize), PeerError> {
    let mut received = Vec::new();
    let mut chunks = Vec::new();
    for piece in stream.chunks(step.max(1)) {
        received.extend_from_slice(piece);
        while let Opened::Chunk { payload, consumed } = opener.open(&mut received, now)? {
            assert!(payload.start <= payload.end && payload.end <= consumed);
            assert!(consumed <= received.len());
            chunks.push(received[payload].to_vec());
            received.drain(..consumed);
        }
    }
    Ok((chunks, received.len()))
}

/// A TCP stream of `salt` followed by each of `chunks` sealed in turn under the session key of
/// `key` and `salt`, with no framing added: the caller writes the length chunks (2017) or fixed
/// header (2022) it wants, valid or not. No identity header.
pub fn forge_tcp_stream(method: Method, key: &Key, salt: &[u8], chunks: &[&[u8]]) -> Vec<u8> {
    let mut cipher = SessionCipher::from_salt(method, key, salt);
    let mut out = salt.to_vec();
    for chunk in chunks {
        let at = out.len();
        out.extend_from_slice(chunk);
        out.resize(at + chunk.len() + TAG_LEN, 0);
        cipher.seal_with_tag(&mut out[at..], chunk.len());
    }
    out
}

/// A client-to-server UDP packet under `key` (no identity header) whose plaintext after the salt
/// (2017) or after the session and packet ids (2022) is exactly `body`.
pub fn forge_udp_packet(method: Method, key: &Key, body: &[u8]) -> Vec<u8> {
    let mut ids = [0u8; 16];
    ids[..8].copy_from_slice(&0x5e55_1011_u64.to_be_bytes());
    match method {
        Method::Blake3Aes128Gcm | Method::Blake3Aes256Gcm => {
            let cipher = SessionCipher::new(method, &session_subkey(method, key, &ids[..8]));
            let mut out = [&ids[..], body, &[0; TAG_LEN]].concat();
            let end = 16 + body.len();
            let nonce = ids[4..].try_into().expect("12 bytes");
            let tag = cipher.seal_with_nonce(nonce, &mut out[16..end]);
            out[end..].copy_from_slice(tag.as_ref());
            BlockCipher::new(key.as_bytes()).encrypt(&mut out[..16]);
            out
        }
        Method::Blake3Chacha20Poly1305 => {
            let nonce = [0x24; 24];
            let mut out = [&nonce[..], &ids, body].concat();
            let tag = XChaCha::new(key).seal(&nonce, &mut out[24..]);
            out.extend_from_slice(&tag);
            out
        }
        _ => {
            let salt = vec![0x17; method.salt_len()];
            forge_tcp_stream(method, key, &salt, &[body])
        }
    }
}

/// Keys of the inbound every entry point serves: two users, with identity headers if asked and
/// the method allows them.
struct Fixture {
    keys: UserKeys,
    /// The second user's key: trial decryption has to get past the first.
    user: Key,
    identity: Option<Key>,
}

fn fixture(method: Method, identity: bool) -> &'static Fixture {
    static FIXTURES: [OnceLock<Fixture>; 12] = [const { OnceLock::new() }; 12];
    let index = Method::ALL
        .iter()
        .position(|&m| m == method)
        .expect("a listed method");
    let identity = identity && method.supports_identity_headers();
    FIXTURES[index * 2 + usize::from(identity)].get_or_init(|| {
        let password = |n: u8| {
            if method.is_2022() {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.encode(vec![n; method.key_len()])
            } else {
                format!("fuzz password {n}")
            }
        };
        let server_psk = identity.then(|| password(0xee));
        let passwords = [password(1), password(2)];
        let users = [(1, passwords[0].as_str()), (2, passwords[1].as_str())];
        let keys = UserKeys::new(method, server_psk.as_deref(), users).expect("valid fixture");
        let key = |p: &str| Key::from_password(method, p).expect("valid fixture");
        Fixture {
            keys,
            user: key(&passwords[1]),
            identity: server_psk.as_deref().map(key),
        }
    })
}

/// `(read size, rest)`: the first byte of a fuzz input sets how many bytes each simulated read
/// delivers, so the "need more" paths are taken at every offset.
fn read_size(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (usize::from(first) + 1, rest),
        None => (1, data),
    }
}

/// [`TargetAddr::parse`]; whatever parses must re-encode to the same address (an IP literal
/// sent as a host name comes back in the shorter IP form).
pub fn target_addr(data: &[u8]) {
    if let Ok(Parsed::Done(addr, n)) = TargetAddr::parse(data) {
        // `encoded_len` may exceed `n`: a domain that is an IP literal (`"::"`) parses to
        // the IP form, whose encoding is longer than the short name.
        assert!(n <= data.len());
        let mut out = [0u8; MAX_ADDR_LEN];
        let written = addr.write(&mut out);
        assert_eq!(written, addr.encoded_len());
        assert_eq!(
            TargetAddr::parse(&out[..written]),
            Ok(Parsed::Done(addr, written))
        );
    }
}

fn handshake_raw(method: Method, identity: bool, data: &[u8]) {
    let (step, wire) = read_size(data);
    let mut salts = SaltFilter::new(60, 1024);
    let keys = &fixture(method, identity).keys;
    let _ = feed_handshake(keys, &mut wire.to_vec(), step, NOW, None, &mut salts);
}

/// Server handshake over arbitrary bytes: aes-128-gcm, two users (trial decryption).
pub fn tcp_handshake_2017(data: &[u8]) {
    handshake_raw(Method::Aes128Gcm, false, data);
}

/// Server handshake over arbitrary bytes: 2022-blake3-aes-128-gcm with identity headers.
pub fn tcp_handshake_2022(data: &[u8]) {
    handshake_raw(Method::Blake3Aes128Gcm, true, data);
}

fn handshake_forged(method: Method, first: &[u8], body: &[u8]) {
    let f = fixture(method, false);
    let salt = vec![0x55; method.salt_len()];
    let mut wire = forge_tcp_stream(method, &f.user, &salt, &[first, body]);
    let mut salts = SaltFilter::new(60, 1024);
    let step = wire.len();
    let _ = feed_handshake(&f.keys, &mut wire, step, NOW, None, &mut salts);
}

/// The 2017 request header behind the AEAD (aes-256-gcm): `data` is the plaintext of the first
/// chunk (address, then initial payload).
pub fn tcp_header_2017(data: &[u8]) {
    let body = &data[..data.len().min(0xFFFF)];
    let len = (body.len() as u16).to_be_bytes();
    handshake_forged(Method::Aes256Gcm, &len, body);
}

/// The 2022 request header behind the AEAD (2022-blake3-chacha20-poly1305): `data[0]` is the
/// header type, `data[1]` the clock skew in seconds (signed), the rest the variable header
/// (address, padding length, padding, initial payload).
pub fn tcp_header_2022(data: &[u8]) {
    let [kind, skew, rest @ ..] = data else {
        return;
    };
    let body = &rest[..rest.len().min(0xFFFF)];
    let ts = NOW.wrapping_add_signed(i64::from(*skew as i8));
    let mut fixed = [*kind, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    fixed[1..9].copy_from_slice(&ts.to_be_bytes());
    fixed[9..].copy_from_slice(&(body.len() as u16).to_be_bytes());
    handshake_forged(Method::Blake3Chacha20Poly1305, &fixed, body);
}

/// Chunk streams after a valid handshake: `data[0]` picks the method and the side (server
/// reading the request stream, or client reading the response stream), `data[1]` the read size,
/// the rest is the stream.
pub fn tcp_stream(data: &[u8]) {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let (step, stream) = read_size(data);
    let method = Method::ALL[usize::from(pick) % Method::ALL.len()];
    let f = fixture(method, true);
    let salt = vec![0x33; method.salt_len()];
    let target = TargetAddr::Domain("example.com".into(), 443);
    let request = ClientRequest {
        method,
        key: &f.user,
        identity: f.identity.as_ref(),
        salt: &salt,
        target: &target,
        padding: 0,
    };
    let mut wire = vec![0u8; 512];
    let (n, _, client_opener) = request.encode(b"hello", NOW, &mut wire);
    let mut opener = if pick / 6 % 2 == 0 {
        let mut salts = SaltFilter::new(60, 1024);
        let accepted = feed_handshake(&f.keys, &mut wire[..n], n, NOW, None, &mut salts);
        let Ok(Some((request, _))) = accepted else {
            unreachable!("the fixture's own request is accepted")
        };
        request.opener
    } else {
        client_opener
    };
    let _ = feed_stream(&mut opener, stream, step, NOW);
}

fn udp(method: Method, data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let forge = mode & 1 == 1;
    let f = fixture(method, !forge);
    let mut packet = if forge {
        forge_udp_packet(method, &f.user, rest)
    } else {
        rest.to_vec()
    };
    let mut scratch = vec![0u8; packet.len()];
    let client = UdpClient::new(method, f.user.clone(), f.identity.clone(), 7);
    let mut copy = packet.clone();
    if let Ok((_, payload)) = client.decode(&mut copy, NOW) {
        assert!(payload.start <= payload.end && payload.end <= copy.len());
    }
    if let Ok(p) = decode_client_packet(&f.keys, &mut packet, NOW, None, &mut scratch) {
        assert!(p.payload.start <= p.payload.end && p.payload.end <= packet.len());
    }
}

/// UDP packets, AEAD-2017 (chacha20-ietf-poly1305, two users), server and client side.
/// `data[0]` odd: the rest is sealed as a packet body under a user's key first.
pub fn udp_2017(data: &[u8]) {
    udp(Method::Chacha20IetfPoly1305, data);
}

/// UDP packets, 2022-blake3-aes-256-gcm (identity headers for raw bytes), as [`udp_2017`].
pub fn udp_2022_aes(data: &[u8]) {
    udp(Method::Blake3Aes256Gcm, data);
}

/// UDP packets, 2022-blake3-chacha20-poly1305, as [`udp_2017`].
pub fn udp_2022_chacha(data: &[u8]) {
    udp(Method::Blake3Chacha20Poly1305, data);
}

// ---------------------------------------------------------------------------------------------
// VLESS, Mux.Cool, Trojan

/// The VLESS user every VLESS entry point knows.
pub const VLESS_UUID: [u8; 16] = *b"fuzz vless uuid!";

/// The Trojan password every Trojan entry point knows.
pub const TROJAN_PASSWORD: &str = "fuzz trojan password";

fn vless_users() -> &'static crate::vless::VlessUsers {
    static USERS: OnceLock<crate::vless::VlessUsers> = OnceLock::new();
    USERS.get_or_init(|| crate::vless::VlessUsers::new([(1, VLESS_UUID)]).expect("valid fixture"))
}

fn trojan_users() -> &'static crate::trojan::TrojanUsers {
    static USERS: OnceLock<crate::trojan::TrojanUsers> = OnceLock::new();
    USERS.get_or_init(|| {
        crate::trojan::TrojanUsers::new([(1, TROJAN_PASSWORD)]).expect("valid fixture")
    })
}

/// Feeds every prefix of `wire` to a stateless handshake parser, checking the contract the
/// engine's fallback relies on: answers go "need more" until they settle, and once a prefix is
/// done or rejected every longer prefix gives the same answer.
fn check_prefixes<T: PartialEq + std::fmt::Debug, E: PartialEq + std::fmt::Debug>(
    wire: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<T>, E>,
) {
    let mut settled: Option<Result<T, E>> = None;
    for cut in 0..=wire.len() {
        let got = parse(&wire[..cut]);
        match (&settled, got) {
            (None, Ok(None)) => {}
            (None, Ok(Some(done))) => settled = Some(Ok(done)),
            (None, Err(e)) => settled = Some(Err(e)),
            (Some(Err(_)), Err(_)) => {}
            (Some(before), got) => {
                let got = got.map(|d| d.expect("a done request stays done"));
                assert_eq!(before, &got, "answer changed at {cut}");
            }
        }
    }
}

/// The fuzz input after its first byte, behind `known` (a header prefix that gets past the
/// user lookup) when that byte is odd.
fn behind_known_prefix(data: &[u8], known: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    Some(if mode & 1 == 1 {
        [known, rest].concat()
    } else {
        rest.to_vec()
    })
}

/// VLESS request headers: `data[0]` odd puts the known user's version and UUID in front of the
/// rest, so the parser gets past the user lookup. Then the rest (after the header, if one
/// parsed) is read as length-prefixed UDP packets.
pub fn vless_request(data: &[u8]) {
    use crate::vless::{parse_request, read_udp_packet, UdpFrame};
    use crate::Progress;
    let Some(wire) = behind_known_prefix(data, &[&[0][..], &VLESS_UUID].concat()) else {
        return;
    };
    let parse = |b: &[u8]| parse_request(vless_users(), b).map(Progress::into_done);
    check_prefixes(&wire, parse);
    let mut at = 0;
    if let Ok(Some(request)) = parse(&wire) {
        assert!(request.consumed <= wire.len());
        if let crate::vless::Flow::Other(range) = &request.flow {
            assert!(std::str::from_utf8(&wire[range.clone()]).is_ok());
        }
        at = request.consumed;
    }
    while let UdpFrame::Packet { payload, consumed } = read_udp_packet(&wire[at..]) {
        assert!(payload.end == consumed && at + consumed <= wire.len());
        at += consumed;
    }
}

/// Mux.Cool/XUDP frames, one after another; each parsed frame must re-encode to a frame that
/// parses the same.
pub fn mux_frames(data: &[u8]) {
    use crate::mux::{parse_frame, MuxRead, OPTION_DATA};
    let mut at = 0;
    while let Ok(MuxRead::Frame {
        frame,
        data: range,
        consumed,
    }) = parse_frame(&data[at..])
    {
        assert!(range.start <= range.end && range.end == consumed);
        assert!(at + consumed <= data.len());
        let len = (frame.options & OPTION_DATA != 0).then(|| range.len() as u16);
        let mut out = vec![0u8; frame.header_len(len) + range.len()];
        let n = frame.write(&mut out, len);
        out[n..].copy_from_slice(&data[at + range.start..at + range.end]);
        let Ok(MuxRead::Frame { frame: again, .. }) = parse_frame(&out) else {
            panic!("a written frame does not parse: {frame:?}")
        };
        assert_eq!(again, frame);
        at += consumed;
    }
}

/// Trojan request headers: `data[0]` odd puts the known user's hash and CRLF in front of the
/// rest. Then the rest (after the header, if one parsed) is read as UDP ASSOCIATE packets,
/// each re-framed and read back.
pub fn trojan_request(data: &[u8]) {
    use crate::trojan::{
        frame_udp_packet, parse_request, password_hash, read_udp_packet, UdpFrame, UDP_HEADROOM,
    };
    use crate::Progress;
    let known = [&password_hash(TROJAN_PASSWORD)[..], b"\r\n"].concat();
    let Some(wire) = behind_known_prefix(data, &known) else {
        return;
    };
    let parse = |b: &[u8]| parse_request(trojan_users(), b).map(Progress::into_done);
    check_prefixes(&wire, parse);
    let mut at = 0;
    if let Ok(Some(request)) = parse(&wire) {
        assert!(request.consumed <= wire.len());
        at = request.consumed;
    }
    while let Ok(UdpFrame::Packet {
        target,
        payload,
        consumed,
    }) = read_udp_packet(&wire[at..])
    {
        assert!(payload.end == consumed && at + consumed <= wire.len());
        let body = &wire[at + payload.start..at + payload.end];
        let mut buf = vec![0u8; UDP_HEADROOM + body.len()];
        buf[UDP_HEADROOM..].copy_from_slice(body);
        let end = buf.len();
        let sent = frame_udp_packet(&mut buf, UDP_HEADROOM..end, &target);
        let again = read_udp_packet(&buf[sent.clone()]).expect("a framed packet parses");
        let UdpFrame::Packet {
            target: t,
            payload: p,
            ..
        } = again
        else {
            panic!("a framed packet is complete")
        };
        assert_eq!((t, &buf[sent][p]), (target, body));
        at += consumed;
    }
}

/// XTLS Vision: the input (after a first byte choosing the read size) through the unpadder in
/// reads of that size, once as it is and once behind a valid first block, with the filter and
/// the write plan looking at the same reads; then the input as the payload of padded blocks
/// must unpad back to itself.
pub fn vless_vision(data: &[u8]) {
    use crate::vless::vision::{
        block_len, padding_len, plan_write, write_block, Command, TlsFilter, Unpadder, MAX_CONTENT,
    };
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let opened = [&VLESS_UUID[..], &[0, 0, 0, 0, 0], rest].concat();
    for wire in [rest, &opened[..]] {
        let mut unpadder = Unpadder::new(VLESS_UUID);
        let mut filter = TlsFilter::default();
        for chunk in wire.chunks(step) {
            filter.observe(chunk);
            let _ = plan_write(&filter, chunk);
            let mut b = chunk.to_vec();
            match unpadder.unpad(&mut b) {
                Ok(u) => assert!(u.len <= chunk.len()),
                Err(_) => break,
            }
        }
    }
    let pieces: Vec<&[u8]> = rest.chunks(step.min(MAX_CONTENT)).collect();
    let mut wire = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let command = if i + 1 == pieces.len() {
            Command::End
        } else {
            Command::Continue
        };
        let padding = padding_len(piece.len(), i % 2 == 0, (step * 31 + i) as u32);
        let mut block = vec![0xa5; block_len(i == 0, piece.len(), padding)];
        write_block(
            &mut block,
            (i == 0).then_some(&VLESS_UUID),
            command,
            piece,
            padding,
        );
        wire.extend_from_slice(&block);
    }
    if wire.is_empty() {
        return;
    }
    wire.extend_from_slice(b"after");
    let mut unpadder = Unpadder::new(VLESS_UUID);
    let (mut out, mut ended) = (Vec::new(), None);
    // The first read holds the UUID and a header, as the server's first payload does.
    let first = step.max(21).min(wire.len());
    for chunk in std::iter::once(&wire[..first]).chain(wire[first..].chunks(step)) {
        let mut b = chunk.to_vec();
        let u = unpadder.unpad(&mut b).expect("blocks we wrote");
        out.extend_from_slice(&b[..u.len]);
        ended = ended.or(u.ended);
    }
    assert_eq!(out, [rest, b"after"].concat());
    assert_eq!(ended, Some(Command::End));
}

#[cfg(test)]
mod tests {
    /// Xorshift64 bytes: reproducible garbage.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        (0..len).map(|_| next()).collect()
    }

    /// The VLESS, Mux.Cool, Trojan, VMess and Hysteria2 entry points survive garbage of every
    /// short length, in both modes, and take their own seeds.
    #[test]
    fn v2ray_family_entry_points_survive_garbage() {
        let entry_points: [fn(&[u8]); 10] = [
            super::vless_request,
            super::vless_vision,
            super::mux_frames,
            super::trojan_request,
            super::vmess_handshake,
            super::vmess_body,
            super::hysteria2_tcp_request,
            super::hysteria2_udp_message,
            super::hysteria2_reassembly,
            super::hysteria2_auth_request,
        ];
        for entry_point in entry_points {
            for len in 0..200 {
                let mut input = noise(len as u64, len);
                entry_point(&input);
                if let Some(first) = input.first_mut() {
                    *first |= 1;
                }
                entry_point(&input);
            }
        }
    }

    /// The Hysteria2 entry points' assertions hold on valid inputs: a request, a large UDP
    /// message cut into many fragments, interleaved fragments of two sessions, an auth head.
    #[test]
    fn hysteria2_entry_points_take_valid_inputs() {
        use crate::hysteria2::{http3, tcp, udp::UdpMessage};
        let mut request = vec![1];
        tcp::encode_request("[2001:db8::1]:443", b"padding", &mut request);
        super::hysteria2_tcp_request(&request[..]);
        super::hysteria2_tcp_request(&[&[0][..], &request[1..]].concat());

        let payload = noise(9, 3000);
        let message = |session_id, packet_id, frag_id, frag_count, payload| UdpMessage {
            session_id,
            packet_id,
            frag_id,
            frag_count,
            address: b"example.com:53",
            payload,
        };
        let mut datagram = vec![20];
        message(1, 2, 0, 1, &payload[..]).encode(&mut datagram);
        super::hysteria2_udp_message(&datagram);

        let mut run = Vec::new();
        for (session_id, packet_id, frag_id, frag_count, piece) in [
            (1, 5, 1, 2, &b"world"[..]),
            (2, 5, 0, 2, b"other "),
            (1, 5, 1, 2, b"dup"),
            (1, 5, 0, 2, b"hello "),
            (2, 6, 0, 1, b"whole"),
            (2, 5, 1, 2, b"session"),
        ] {
            let mut d = Vec::new();
            message(session_id, packet_id, frag_id, frag_count, piece).encode(&mut d);
            run.push(d.len() as u8);
            run.extend_from_slice(&d);
        }
        super::hysteria2_reassembly(&run);

        let mut head = vec![0];
        http3::push_auth_request(b"secret", 100, b"xyz", &mut head);
        super::hysteria2_auth_request(&head);
        let mut section = vec![3];
        crate::hysteria2::qpack::encode_field_section(
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":path", b"/"),
            ],
            &mut section,
        );
        super::hysteria2_auth_request(&section);
    }
}

// ---------------------------------------------------------------------------------------------
// VMess

/// Feeds `wire` to a fresh VMess handshake `step` bytes at a time, as a relay reading a socket
/// would. `Ok(None)`: all of `wire` was fed and the handshake still needs more. Otherwise the
/// request and how many bytes had been fed when it completed.
pub fn feed_vmess_handshake(
    users: &crate::vmess::VmessUsers,
    wire: &mut [u8],
    step: usize,
    now: u64,
    replay: &mut dyn SaltCheck,
) -> Result<Option<(crate::vmess::Request, usize)>, crate::vmess::PeerError> {
    use crate::vmess::{Handshake, ServerHandshake};
    let mut handshake = ServerHandshake::new();
    let mut fed = 0;
    loop {
        fed = (fed + step.max(1)).min(wire.len());
        if let Handshake::Done(request) =
            handshake.advance(users, &mut wire[..fed], now, None, replay)?
        {
            assert!(request.consumed <= fed);
            return Ok(Some((request, fed)));
        }
        if fed == wire.len() {
            return Ok(None);
        }
    }
}

/// What [`feed_vmess_body`] read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VmessBody {
    /// Every chunk's plaintext.
    pub chunks: Vec<Vec<u8>>,
    /// Whether the end marker came.
    pub ended: bool,
    /// Received bytes left unconsumed.
    pub left: usize,
}

/// Feeds `stream` to `opener` `step` bytes at a time, dropping each chunk from the head of the
/// receive buffer once it is opened, as a relay does.
pub fn feed_vmess_body(
    opener: &mut crate::vmess::BodyOpener,
    stream: &[u8],
    step: usize,
) -> Result<VmessBody, crate::vmess::PeerError> {
    use crate::vmess::Opened;
    let mut received = Vec::new();
    let mut body = VmessBody::default();
    for piece in stream.chunks(step.max(1)) {
        received.extend_from_slice(piece);
        loop {
            match opener.open(&mut received)? {
                Opened::NeedMore => break,
                Opened::Chunk { payload, consumed } => {
                    assert!(payload.start <= payload.end && payload.end <= consumed);
                    assert!(consumed <= received.len());
                    body.chunks.push(received[payload].to_vec());
                    received.drain(..consumed);
                }
                Opened::End { consumed } => {
                    assert!(consumed <= received.len());
                    received.drain(..consumed);
                    body.ended = true;
                    break;
                }
            }
        }
        if body.ended {
            break;
        }
    }
    body.left = received.len();
    Ok(body)
}

/// Seals `data` with `sealer` as one chunk; returns the bytes to send.
pub fn vmess_seal(sealer: &mut crate::vmess::BodySealer, data: &[u8]) -> Vec<u8> {
    use crate::vmess::{SEAL_HEADROOM, SEAL_TAILROOM};
    let mut buf = vec![0u8; SEAL_HEADROOM + data.len() + SEAL_TAILROOM];
    let payload = SEAL_HEADROOM..SEAL_HEADROOM + data.len();
    buf[payload.clone()].copy_from_slice(data);
    let sent = sealer.seal(&mut buf, payload);
    buf[sent].to_vec()
}

/// The UUID of the VMess user the forging entry points seal under (the second of two).
pub const VMESS_UUID: [u8; 16] = *b"fuzz vmess uuid!";

fn vmess_users() -> &'static crate::vmess::VmessUsers {
    static USERS: OnceLock<crate::vmess::VmessUsers> = OnceLock::new();
    USERS.get_or_init(|| {
        crate::vmess::VmessUsers::new([(1, [7; 16]), (2, VMESS_UUID)]).expect("valid fixture")
    })
}

/// VMess server handshake. `data[0]` sets the read size; with `data[0]` odd the rest is the
/// header plaintext, sealed under a known user with a valid auth ID first (so the parser behind
/// the AEAD is reached), otherwise it is fed raw. A completed handshake's request body is then
/// opened from whatever follows.
pub fn vmess_handshake(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(first >> 1) + 1;
    let mut wire = if first & 1 == 1 {
        let plaintext = &rest[..rest.len().min(0xffff)];
        let mut out = vec![0u8; 42 + plaintext.len() + 16];
        out[42..42 + plaintext.len()].copy_from_slice(plaintext);
        let cmd_key = crate::vmess::cmd_key(&VMESS_UUID);
        crate::vmess::seal_request_header(&cmd_key, NOW, [0; 4], [0; 8], &mut out, plaintext.len());
        out
    } else {
        rest.to_vec()
    };
    let mut replay = SaltFilter::new(crate::vmess::AUTH_ID_TTL, 1024);
    if let Ok(Some((request, _))) =
        feed_vmess_handshake(vmess_users(), &mut wire, step, NOW, &mut replay)
    {
        let _ = feed_vmess_body(&mut request.opener(), &wire[request.consumed..], step);
    }
}

/// VMess bodies after a valid handshake. `data[0]` picks the security, options and command,
/// and whether the server reads the request body or the client the response; `data[1]` sets
/// the read size. With `data[0] & 0x80` the rest is cut into chunks (at bytes equal to
/// `data[1]`), sealed by the matching sealer and must open to the same chunks; otherwise the
/// rest is fed raw.
pub fn vmess_body(data: &[u8]) {
    use crate::vmess::option::{AUTHENTICATED_LENGTH, CHUNK_MASKING, CHUNK_STREAM, GLOBAL_PADDING};
    use crate::vmess::{ClientRequest, Command, Security};
    let [pick, cut, rest @ ..] = data else {
        return;
    };
    const PROFILES: [(Security, u8); 8] = [
        (
            Security::Aes128Gcm,
            CHUNK_STREAM | CHUNK_MASKING | GLOBAL_PADDING,
        ),
        (
            Security::Aes128Gcm,
            CHUNK_STREAM | CHUNK_MASKING | AUTHENTICATED_LENGTH,
        ),
        (Security::Chacha20Poly1305, CHUNK_STREAM),
        (
            Security::Chacha20Poly1305,
            CHUNK_STREAM | CHUNK_MASKING | GLOBAL_PADDING | AUTHENTICATED_LENGTH,
        ),
        (Security::None, 0),
        (Security::None, CHUNK_STREAM),
        (Security::None, CHUNK_STREAM | CHUNK_MASKING),
        (
            Security::None,
            CHUNK_STREAM | CHUNK_MASKING | GLOBAL_PADDING,
        ),
    ];
    let (security, options) = PROFILES[usize::from(pick & 7)];
    let command = match (pick >> 3) % 3 {
        0 => Command::Tcp(TargetAddr::Domain("example.com".into(), 443)),
        1 => Command::Udp(TargetAddr::Ip(([8, 8, 8, 8], 53).into())),
        _ => Command::Mux,
    };
    if security == Security::None && options == 0 && matches!(command, Command::Udp(_)) {
        return;
    }
    let request = ClientRequest {
        cmd_key: crate::vmess::cmd_key(&VMESS_UUID),
        command: &command,
        security,
        options,
        key: [0x42; 16],
        iv: [0x24; 16],
        response_auth: 0x99,
        padding: 3,
        auth_random: [0; 4],
        nonce: [1; 8],
    };
    let mut wire = vec![0u8; request.encoded_len()];
    let (n, client_sealer, client_opener) = request.encode(NOW, &mut wire);
    let mut replay = SaltFilter::new(crate::vmess::AUTH_ID_TTL, 1024);
    let Ok(Some((server, _))) = feed_vmess_handshake(vmess_users(), &mut wire, n, NOW, &mut replay)
    else {
        unreachable!("the fixture's own request is accepted")
    };
    let (mut sealer, mut opener) = if pick & 0x40 == 0 {
        (client_sealer, server.opener())
    } else {
        (server.sealer(), client_opener)
    };
    let step = usize::from(*cut) + 1;
    if pick & 0x80 == 0 {
        let _ = feed_vmess_body(&mut opener, rest, step);
        return;
    }
    let chunks: Vec<&[u8]> = rest
        .split(|b| b == cut)
        .filter(|c| !c.is_empty())
        .map(|c| &c[..c.len().min(crate::vmess::MAX_CHUNK_PAYLOAD)])
        .collect();
    let stream: Vec<u8> = chunks
        .iter()
        .flat_map(|c| vmess_seal(&mut sealer, c))
        .collect();
    let body = feed_vmess_body(&mut opener, &stream, step).expect("a sealed stream opens");
    let chunked = security != Security::None || options & CHUNK_STREAM != 0;
    if chunked {
        assert_eq!(body.chunks, chunks);
    } else {
        assert_eq!(body.chunks.concat(), chunks.concat());
    }
    assert_eq!(body.left, 0);
}

/// WebSocket upgrade requests: never a panic; a complete request's ranges lie inside its head,
/// and a prefix of an accepted request is never refused.
pub fn ws_handshake(data: &[u8]) {
    use crate::ws::handshake::{parse_upgrade, UpgradePolicy};
    use crate::Progress;
    let policy = UpgradePolicy {
        path: "/ws",
        host: data.first().filter(|&&b| b & 1 == 1).map(|_| "example.com"),
        early_data: true,
    };
    if let Ok(Progress::Done(up)) = parse_upgrade(&policy, data) {
        assert!(up.consumed <= data.len());
        if let Some(r) = &up.early_data {
            assert!(r.start <= r.end && r.end <= up.consumed);
        }
        assert!(up.decode_early_data(data).len() <= crate::ws::handshake::MAX_REQUEST_HEAD * 3 / 4);
        let mut out = Vec::new();
        up.write_response(data, &mut out);
        assert!(out.ends_with(b"\r\n\r\n"));
        for cut in 0..up.consumed {
            assert_eq!(parse_upgrade(&policy, &data[..cut]), Ok(Progress::NeedMore));
        }
    }
}

/// WebSocket client frames: never a panic, and the stream decoded does not depend on how the
/// bytes were cut (`data[0]` picks the piece size), errors included.
pub fn ws_frames(data: &[u8]) {
    use crate::ws::frame::FrameDecoder;
    let Some((&step, wire)) = data.split_first() else {
        return;
    };
    let run = |step: usize| {
        let mut d = FrameDecoder::new(1 << 16);
        let mut out = Vec::new();
        let mut events = (0, 0);
        for piece in wire.chunks(step.max(1)) {
            let mut buf = piece.to_vec();
            match d.decode(&mut buf) {
                Ok(got) => {
                    assert!(got.data <= piece.len());
                    out.extend_from_slice(&buf[..got.data]);
                    events.0 += usize::from(got.ping);
                    events.1 += usize::from(got.closed);
                }
                Err(e) => return (out, events, Some(e)),
            }
        }
        (out, events, None)
    };
    let (whole, whole_events, whole_err) = run(wire.len());
    let (cut, cut_events, cut_err) = run(usize::from(step));
    assert_eq!(whole_err, cut_err);
    if whole_err.is_none() {
        assert_eq!(whole, cut);
        assert_eq!(whole_events.1, cut_events.1);
        assert!(whole_events.1 <= 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Hysteria2

/// Hysteria2 TCP requests: `data[0]` odd puts the 0x401 frame type in front of the rest. The
/// answers to every prefix stay "need more" until they settle, then never change; a parsed
/// target written back as a request parses to the same target.
pub fn hysteria2_tcp_request(data: &[u8]) {
    use crate::hysteria2::tcp::{encode_request, parse_request};
    let Some(wire) = behind_known_prefix(data, &[0x44, 0x01]) else {
        return;
    };
    check_prefixes(&wire, |b| parse_request(b).map(crate::Progress::into_done));
    if let Ok(crate::Progress::Done(request)) = parse_request(&wire) {
        assert!(request.consumed <= wire.len());
        let mut again = Vec::new();
        encode_request(&request.target.to_string(), b"", &mut again);
        let Ok(crate::Progress::Done(reparsed)) = parse_request(&again) else {
            panic!("a written request parses")
        };
        assert_eq!(reparsed.target, request.target);
        assert_eq!(reparsed.consumed, again.len());
    }
}

/// Hysteria2 UDP messages: a parsed datagram written back parses to the same message, and cut
/// into fragments (`data[0]` sets the room for payload per fragment) it reassembles to the
/// same payload.
pub fn hysteria2_udp_message(data: &[u8]) {
    use crate::hysteria2::udp::{fragment, Reassembled, Reassembly, UdpMessage};
    let Some((&room, datagram)) = data.split_first() else {
        return;
    };
    let Ok(message) = UdpMessage::parse(datagram) else {
        return;
    };
    let mut again = Vec::new();
    message.encode(&mut again);
    assert!(again.len() <= datagram.len());
    assert_eq!(UdpMessage::parse(&again), Ok(message));
    let whole = UdpMessage {
        frag_id: 0,
        frag_count: 1,
        ..message
    };
    let max = whole.header_len() + usize::from(room) + 1;
    let Ok(pieces) = fragment(&whole, max) else {
        assert!(message.payload.len() > 255 * (usize::from(room) + 1));
        return;
    };
    let mut reassembly = Reassembly::new();
    let mut joined = None;
    for piece in pieces {
        let mut wire = Vec::new();
        piece.encode(&mut wire);
        assert!(wire.len() <= max);
        let parsed = UdpMessage::parse(&wire).expect("a fragment parses");
        match reassembly.feed(&parsed, usize::MAX) {
            Reassembled::Whole(p) => joined = Some(p.to_vec()),
            Reassembled::Joined(p) => joined = Some(p),
            Reassembled::Pending => {}
        }
    }
    assert_eq!(joined.as_deref(), Some(message.payload));
}

/// Hysteria2 reassembly: the input is a run of datagrams, each behind a one-byte length, fed
/// to one [`crate::hysteria2::udp::Reassembly`] per session. Every packet that comes out must
/// be what a plain model of the rules (one packet in flight per session, a new packet id or
/// count starts over, duplicates and bad ids ignored, [`MAX_PACKET_LEN`] bytes at most) gives.
///
/// [`MAX_PACKET_LEN`]: crate::hysteria2::udp::MAX_PACKET_LEN
pub fn hysteria2_reassembly(data: &[u8]) {
    use crate::hysteria2::udp::{Reassembled, Reassembly, UdpMessage, MAX_PACKET_LEN};
    use std::collections::{BTreeMap, HashMap};
    type Model = ((u16, u8), BTreeMap<u8, Vec<u8>>);
    let mut sessions: HashMap<u32, (Reassembly, Option<Model>)> = HashMap::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        let Ok(m) = UdpMessage::parse(datagram) else {
            continue;
        };
        let (reassembly, model) = sessions.entry(m.session_id).or_default();
        let want: Option<Vec<u8>> = if m.frag_count <= 1 {
            Some(m.payload.to_vec())
        } else if m.frag_id >= m.frag_count {
            None
        } else {
            let key = (m.packet_id, m.frag_count);
            if model.as_ref().map(|(k, _)| *k) != Some(key) {
                *model = Some((key, BTreeMap::new()));
            }
            let (_, frags) = model.as_mut().expect("set above");
            let held: usize = frags.values().map(Vec::len).sum();
            let duplicate = frags.contains_key(&m.frag_id);
            if duplicate {
                None
            } else if held + m.payload.len() > MAX_PACKET_LEN {
                *model = None;
                None
            } else {
                frags.insert(m.frag_id, m.payload.to_vec());
                if frags.len() == usize::from(m.frag_count) {
                    let joined = frags.values().flatten().copied().collect();
                    *model = None;
                    Some(joined)
                } else {
                    None
                }
            }
        };
        let got = match reassembly.feed(&m, usize::MAX) {
            Reassembled::Whole(p) => Some(p.to_vec()),
            Reassembled::Joined(p) => Some(p),
            Reassembled::Pending => None,
        };
        assert_eq!(got, want);
    }
}

/// Hysteria2 authentication request heads. `data[0]` picks the mode: bit 0 set wraps the rest
/// in one HEADERS frame (so the QPACK decoder sees it directly), bit 1 set also runs the rest
/// through the Huffman decoder, whose output must code back to a string that decodes the same.
/// The answers to every prefix stay "need more" until they settle, then never change; a parsed
/// head written back parses to the same head.
pub fn hysteria2_auth_request(data: &[u8]) {
    use crate::hysteria2::http3::{
        parse_request_head, push_frame_header, push_headers_frame, HEADERS,
    };
    use crate::hysteria2::huffman;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 2 != 0 {
        let mut text = Vec::new();
        if huffman::decode(rest, &mut text).is_ok() {
            let mut coded = Vec::new();
            huffman::encode(&text, &mut coded);
            assert_eq!(coded.len(), huffman::encoded_len(&text));
            let mut back = Vec::new();
            huffman::decode(&coded, &mut back).expect("coded text decodes");
            assert_eq!(back, text);
        }
    }
    let wire = if mode & 1 != 0 {
        let mut wire = Vec::new();
        push_frame_header(HEADERS, rest.len(), &mut wire);
        wire.extend_from_slice(rest);
        wire
    } else {
        rest.to_vec()
    };
    const MAX: usize = 4096;
    check_prefixes(&wire, |b| {
        parse_request_head(b, MAX).map(crate::Progress::into_done)
    });
    let Ok(crate::Progress::Done(head)) = parse_request_head(&wire, MAX) else {
        return;
    };
    assert!(head.consumed <= wire.len());
    let _ = head.hysteria_auth();
    let pseudo = [
        (":method", Some(&head.method)),
        (":scheme", head.scheme.as_ref()),
        (":authority", head.authority.as_ref()),
        (":path", head.path.as_ref()),
        (":protocol", head.protocol.as_ref()),
    ];
    let mut fields: Vec<(&[u8], &[u8])> = pseudo
        .iter()
        .filter_map(|&(n, v)| Some((n.as_bytes(), v?.as_bytes())))
        .collect();
    fields.extend(head.fields.iter().map(|f| (&f.name[..], &f.value[..])));
    let mut again = Vec::new();
    push_headers_frame(&fields, &mut again);
    let Ok(crate::Progress::Done(reparsed)) = parse_request_head(&again, usize::MAX >> 2) else {
        panic!("a written head parses")
    };
    assert_eq!(
        (
            reparsed.method,
            reparsed.scheme,
            reparsed.authority,
            reparsed.path,
            reparsed.protocol
        ),
        (
            head.method,
            head.scheme,
            head.authority,
            head.path,
            head.protocol
        )
    );
    assert_eq!(reparsed.fields, head.fields);
}

/// The reverse-proxy masquerade's HTTP/1.1 side: any site response parses without panicking
/// and never yields more body than it was given; any request from a client encodes into
/// exactly one well-formed HTTP/1.1 request (nothing smuggled past its head).
pub fn hysteria2_masquerade(data: &[u8]) {
    use crate::hysteria2::masquerade::{encode_request, parse_response};
    use crate::hysteria2::qpack::Field;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if let Ok(crate::Progress::Done(r)) = parse_response(rest, mode & 1 != 0, mode & 2 != 0) {
        assert!(r.body.len() <= rest.len());
    }
    // Method, path and one field taken from the input, split at NUL bytes.
    let mut parts = rest.split(|&b| b == 0);
    let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let name = parts.next().unwrap_or_default().to_vec();
    let value = parts.next().unwrap_or_default().to_vec();
    let mut out = Vec::new();
    let fields = [Field { name, value }];
    if encode_request(&method, &path, "h", &fields, b"", &mut out).is_ok() {
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut request = httparse::Request::new(&mut headers);
        let parsed = request.parse(&out).expect("our own request parses");
        assert_eq!(parsed, httparse::Status::Complete(out.len()));
    }
}

// ---------------------------------------------------------------------------------------------
// TLS records

/// TLS records after the handshake, as a relay reads them: `data[0]` picks the version and
/// suite, and (odd) whether the rest is raw wire bytes or pieces to seal first under the same
/// key, so that the parser behind the tag is reached. Never a panic; payload ranges stay inside
/// their record; sealed pieces open to exactly what was sealed, with their content type.
pub fn tls_records(data: &[u8]) {
    use crate::tls::{record_len, Protection, Suite, Version, MAX_PLAINTEXT};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = if mode & 2 == 0 {
        Version::Tls13
    } else {
        Version::Tls12
    };
    let suite = match (mode >> 2) % 3 {
        0 => Suite::Aes128Gcm,
        1 => Suite::Aes256Gcm,
        _ => Suite::Chacha20Poly1305,
    };
    let key = [0x42u8; 32];
    let key = &key[..if suite == Suite::Aes128Gcm { 16 } else { 32 }];
    let iv = [9u8; 12];
    let mut rx = Protection::new(version, suite, key, iv, 0).expect("key length");
    let mut wire = Vec::new();
    let mut sealed = Vec::new();
    if mode & 1 == 1 {
        // Pieces: length u8 (times 67, to reach 16 KiB), content type, bytes (repeated).
        let mut tx = Protection::new(version, suite, key, iv, 0).expect("key length");
        for piece in rest.chunks(3) {
            let [len, content_type, fill] = *piece else {
                break;
            };
            let len = (usize::from(len) * 67).min(MAX_PLAINTEXT);
            // A TLS 1.2 header carries the type itself: only the four known ones parse.
            let content_type = match version {
                Version::Tls12 => 20 + content_type % 4,
                Version::Tls13 => content_type,
            };
            let at = wire.len();
            wire.resize(at + tx.prefix_len() + len + tx.suffix_len(), fill);
            tx.seal_in_place(&mut wire[at..], len, content_type);
            sealed.push((content_type, len, fill));
        }
    } else {
        wire.extend_from_slice(rest);
    }
    let mut at = 0;
    let mut opened_count = 0;
    while let Ok(Some(len)) = record_len(&wire[at..], version) {
        if at + len > wire.len() {
            break;
        }
        match rx.open_in_place(&mut wire[at..at + len]) {
            Ok(opened) => {
                assert!(opened.payload.end <= len && opened.payload.start <= opened.payload.end);
                if let Some(&(content_type, plain_len, fill)) = sealed.get(opened_count) {
                    let payload = &wire[at + opened.payload.start..at + opened.payload.end];
                    // TLS 1.3 strips trailing zeros as padding: a zero content type with
                    // zero bytes is all padding (refused), and zero bytes before a real type
                    // are data.
                    if version == Version::Tls12 || content_type != 0 {
                        assert_eq!(opened.content_type, content_type);
                        assert_eq!(payload.len(), plain_len);
                        assert!(payload.iter().all(|&b| b == fill));
                    }
                }
                opened_count += 1;
            }
            Err(_) => {
                assert!(
                    mode & 1 == 0 || version == Version::Tls13,
                    "a sealed record failed"
                );
                break;
            }
        }
        at += len;
    }
    if mode & 1 == 1 && version == Version::Tls12 {
        assert_eq!(opened_count, sealed.len());
    }
}
