//! Tests of the VLESS codec: round trips with the client encoder, every prefix of a request,
//! one test per peer error, and bytes as Xray and sing-box write them.

use super::*;

const ALICE: [u8; 16] = [0x11; 16];
const BOB: [u8; 16] = [0x22; 16];

fn users() -> VlessUsers {
    VlessUsers::new([(7, ALICE), (9, BOB)]).unwrap()
}

fn tcp() -> Command {
    Command::Tcp(TargetAddr::Domain("example.com".into(), 443))
}

fn encode(uuid: [u8; 16], flow: &str, command: &Command) -> Vec<u8> {
    let request = ClientRequest {
        uuid,
        flow,
        command,
    };
    let mut out = vec![0u8; request.encoded_len()];
    let n = request.encode(&mut out);
    assert_eq!(n, out.len());
    out
}

fn done(result: Result<Handshake, PeerError>) -> Request {
    match result {
        Ok(Handshake::Done(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn round_trip_every_command_and_flow() {
    let commands = [
        tcp(),
        Command::Udp(TargetAddr::Ip("[2001:db8::53]:53".parse().unwrap())),
        Command::Udp(TargetAddr::Ip("192.0.2.1:53".parse().unwrap())),
        Command::Mux,
    ];
    let flows = [
        ("", Flow::None),
        (FLOW_VISION, Flow::Vision),
        ("xtls-rprx-direct", Flow::Other(20..36)),
    ];
    for command in &commands {
        for (flow, want_flow) in &flows {
            let mut wire = encode(BOB, flow, command);
            let header_len = wire.len();
            wire.extend_from_slice(b"payload");
            let request = done(parse_request(&users(), &wire));
            assert_eq!(request.user, 9);
            assert_eq!(&request.command, command);
            assert_eq!(&request.flow, want_flow);
            assert_eq!(request.consumed, header_len);
            if let Flow::Other(range) = &request.flow {
                assert_eq!(&wire[range.clone()], flow.as_bytes());
            }
        }
    }
}

#[test]
fn every_prefix_needs_more() {
    for command in [tcp(), Command::Mux] {
        let wire = encode(ALICE, FLOW_VISION, &command);
        for cut in 0..wire.len() {
            assert_eq!(
                parse_request(&users(), &wire[..cut]),
                Ok(Handshake::NeedMore),
                "cut at {cut}"
            );
        }
    }
}

/// The bytes sing-box's VLESS client writes for a TCP request to `1.2.3.4:443`, no flow.
#[test]
fn sing_box_request_bytes() {
    let mut wire = vec![0u8];
    wire.extend_from_slice(&ALICE);
    wire.extend_from_slice(&[0, 1, 0x01, 0xbb, 1, 1, 2, 3, 4]);
    let request = done(parse_request(&users(), &wire));
    assert_eq!(
        request.command,
        Command::Tcp(TargetAddr::Ip("1.2.3.4:443".parse().unwrap()))
    );
    assert_eq!(request.consumed, wire.len());
    assert_eq!(wire, encode(ALICE, "", &request.command));
}

/// Xray's client marshals `Addons { Flow: "xtls-rprx-vision" }` as field 1, length 16.
#[test]
fn xray_vision_addons_bytes() {
    let addons = b"\x0a\x10xtls-rprx-vision";
    assert_eq!(parse_addons(addons, 0), Ok(Flow::Vision));
    let wire = encode(ALICE, FLOW_VISION, &Command::Mux);
    assert_eq!(
        &wire[17..18 + addons.len()],
        b"\x12\x0a\x10xtls-rprx-vision"
    );
}

#[test]
fn addons_skip_unknown_fields() {
    // Seed (field 2, bytes), a varint field 3, a fixed64 field 4, a fixed32 field 5, then Flow.
    let mut addons = vec![0x12, 3, 1, 2, 3, 0x18, 0x96, 0x01, 0x21];
    addons.extend_from_slice(&[0; 8]);
    addons.extend_from_slice(&[0x2d, 0, 0, 0, 0, 0x0a, 0]);
    assert_eq!(parse_addons(&addons, 0), Ok(Flow::None));
    assert_eq!(parse_addons(&[], 0), Ok(Flow::None));
}

#[test]
fn bad_addons() {
    let cases: [&[u8]; 6] = [
        &[0x0a],             // key without a length
        &[0x0a, 5, b'a'],    // string longer than the addons
        &[0x0b],             // wire type 3 (group start)
        &[0x0a, 2, 0xff, 0], // flow that is not UTF-8
        &[0x80; 11],         // varint that never ends
        &[0x0d, 0, 0],       // truncated fixed32
    ];
    for addons in cases {
        assert_eq!(
            parse_addons(addons, 0),
            Err(PeerError::BadAddons),
            "{addons:?}"
        );
        let mut wire = vec![0u8];
        wire.extend_from_slice(&ALICE);
        wire.push(addons.len() as u8);
        wire.extend_from_slice(addons);
        wire.extend_from_slice(&[3]);
        assert_eq!(parse_request(&users(), &wire), Err(PeerError::BadAddons));
    }
}

#[test]
fn peer_errors() {
    let users = users();
    // Not VLESS: an HTTP request, a TLS ClientHello.
    assert_eq!(
        parse_request(&users, b"GET / HTTP/1.1\r\n"),
        Err(PeerError::BadVersion(b'G'))
    );
    assert_eq!(
        parse_request(&users, &[0x16, 3, 1]),
        Err(PeerError::BadVersion(0x16))
    );
    // Unknown user: decided at 17 bytes, whatever follows.
    let stranger = encode([0x33; 16], "", &tcp());
    assert_eq!(
        parse_request(&users, &stranger[..17]),
        Err(PeerError::UnknownUser)
    );
    // Unknown command.
    for command in [0, 4, 0xff] {
        let mut wire = encode(ALICE, "", &Command::Mux);
        *wire.last_mut().unwrap() = command;
        assert_eq!(
            parse_request(&users, &wire),
            Err(PeerError::BadCommand(command))
        );
    }
    // Bad addresses: SOCKS5's IPv6 type, an empty name, a name that is not UTF-8.
    let head = |tail: &[u8]| [&[0][..], &ALICE, &[0, 1], tail].concat();
    assert_eq!(
        parse_request(&users, &head(&[0, 80, 4, 0])),
        Err(PeerError::BadAddress(AddressError::UnknownType(4)))
    );
    assert_eq!(
        parse_request(&users, &head(&[0, 80, 2, 0])),
        Err(PeerError::BadAddress(AddressError::BadDomain))
    );
    assert_eq!(
        parse_request(&users, &head(&[0, 80, 2, 2, 0xc3, 0x28])),
        Err(PeerError::BadAddress(AddressError::BadDomain))
    );
}

#[test]
fn response_header() {
    assert_eq!(parse_response(&RESPONSE_HEADER), Ok(Some(2)));
    assert_eq!(parse_response(&[0]), Ok(None));
    assert_eq!(parse_response(&[0, 2, 0x0a]), Ok(None));
    assert_eq!(parse_response(&[0, 2, 0x0a, 0, b'x']), Ok(Some(4)));
    assert_eq!(
        parse_response(&[1, 0]),
        Err(PeerError::BadResponseVersion(1))
    );
}

#[test]
fn udp_packets_round_trip() {
    let packets: [&[u8]; 4] = [b"", b"a", &[7; 1500], &[9; MAX_UDP_PAYLOAD]];
    let mut stream = Vec::new();
    for p in packets {
        let mut buf = vec![0u8; UDP_PREFIX + p.len()];
        buf[UDP_PREFIX..].copy_from_slice(p);
        let end = buf.len();
        let sent = frame_udp_packet(&mut buf, UDP_PREFIX..end);
        stream.extend_from_slice(&buf[sent]);
    }
    for step in [1, 3, 1000, usize::MAX] {
        let mut received = Vec::new();
        let mut got: Vec<Vec<u8>> = Vec::new();
        for piece in stream.chunks(step.min(stream.len())) {
            received.extend_from_slice(piece);
            while let UdpFrame::Packet { payload, consumed } = read_udp_packet(&received) {
                got.push(received[payload].to_vec());
                received.drain(..consumed);
            }
        }
        assert!(received.is_empty());
        assert_eq!(got, packets.map(<[u8]>::to_vec));
    }
}

#[test]
fn user_ids() {
    let text = "b831381d-6324-4d53-ad4f-8cda48b30811";
    let uuid = parse_user_id(text).unwrap();
    assert_eq!(uuid[..4], [0xb8, 0x31, 0x38, 0x1d]);
    assert_eq!(
        parse_user_id(&text.replace('-', "").to_uppercase()),
        Ok(uuid)
    );
    // A short name maps to its version-5 UUID in the nil namespace, as Xray and sing-box do:
    // uuid.NewSHA1(uuid.Nil, "example") is feb54431-301b-52bb-a6dd-e1e93e81bb9e.
    assert_eq!(
        parse_user_id("example").unwrap(),
        *uuid::Uuid::parse_str("feb54431-301b-52bb-a6dd-e1e93e81bb9e")
            .unwrap()
            .as_bytes()
    );
    for bad in ["", "a name that is much longer than thirty bytes"] {
        assert_eq!(
            parse_user_id(bad),
            Err(ConfigError::BadUserId(bad.to_owned()))
        );
    }
    assert_eq!(
        VlessUsers::new([(1, ALICE), (2, ALICE)]).unwrap_err(),
        (2, ConfigError::DuplicateUser)
    );
    assert_eq!(users().len(), 2);
    assert!(VlessUsers::default().is_empty());
}
