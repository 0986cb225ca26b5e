//! Hysteria2 behaviour that sing-box cannot show, with a client of our own on quinn (an
//! independent QUIC stack): UDP replies reach a client that does not advertise
//! `max_datagram_frame_size` (as official clients since app v2.8.2 do not); a wrong password
//! and any other HTTP/3 request get the masquerade; malformed requests and garbage packets
//! get nothing useful and leave the server serving.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use e2e::*;
use hy2_client::*;
use proto::hysteria2::udp::UdpMessage;
use proto::hysteria2::{http3, tcp};
use proto::Progress;
use serde_json::json;

mod hy2_client;

const PASSWORD: &str = "correct horse battery staple";

/// An engine with one Hysteria2 inbound on a free loopback UDP port (user `u`, and the
/// settings in `extra`), and the certificate to trust.
fn engine(extra: serde_json::Value) -> (engine::Handle, SocketAddr, Trusted) {
    engine_on("127.0.0.1:0", extra)
}

/// [`engine`] listening on `listen`.
fn engine_on(listen: &str, extra: serde_json::Value) -> (engine::Handle, SocketAddr, Trusted) {
    let (cert, key, der) = certificate();
    let mut settings = json!({"users": [{"name": "u", "password": PASSWORD}]});
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    let handle = start_engine(json!({
        "workers": 1,
        "timeouts": {"handshake_secs": 2},
        "outbound": {"allow_loopback": true},
        "inbounds": [{
            "tag": "hy2", "listen": listen, "network": ["udp"],
            "protocol": "hysteria2", "settings": settings,
            "tls": {"certificate": cert, "key": key},
        }],
    }));
    let addr = handle.local_addr("hy2").unwrap();
    (handle, addr, der)
}

fn field<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The answer's fields but its `date`, which it must have, as every HTTP server's answer
/// does (RFC 9110's IMF-fixdate, `Sat, 28 Nov 2026 12:00:00 GMT`).
fn dated(r: &Response) -> Vec<(String, String)> {
    let date = field(r, "date").expect("a date field");
    let shape = date.len() == 29
        && date.ends_with(" GMT")
        && date.as_bytes()[3] == b','
        && jiff::fmt::rfc2822::parse(date).is_ok();
    assert!(shape, "not an HTTP date: {date:?}");
    r.fields
        .iter()
        .filter(|(n, _)| n != "date")
        .cloned()
        .collect()
}

/// Opens a TCP proxy stream to `target` with `upload` after the request, and reads until the
/// server's answer (accepted) and `want` bytes from the target have come: the streams and
/// those bytes.
async fn tcp_exchange(
    conn: &quinn::Connection,
    target: SocketAddr,
    upload: &[u8],
    want: usize,
) -> (quinn::SendStream, quinn::RecvStream, Vec<u8>) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut request = Vec::new();
    tcp::encode_request(&target.to_string(), b"", &mut request);
    request.extend_from_slice(upload);
    send.write_all(&request).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let mut answer = None;
    while answer.is_none_or(|start| got.len() < start + want) {
        let n = recv
            .read(&mut buf)
            .await
            .unwrap()
            .expect("more of the answer");
        got.extend_from_slice(&buf[..n]);
        if answer.is_none() {
            if let Progress::Done(r) = tcp::parse_response(&got).unwrap() {
                assert!(r.ok, "TCP request refused");
                answer = Some(r.consumed);
            }
        }
    }
    let start = answer.expect("the loop ends with an answer");
    (send, recv, got.split_off(start))
}

/// Opens a TCP proxy stream to `target` and checks an echo through it.
async fn tcp_echo_through(conn: &quinn::Connection, target: SocketAddr) {
    let hello = b"hello through hysteria2";
    let (_send, _recv, echoed) = tcp_exchange(conn, target, hello, hello.len()).await;
    assert_eq!(echoed, hello);
}

/// Opens stream number `i` of a test that opens many one after another, failing the test
/// when the server gives no stream credit for 5 s (it has not freed the earlier ones).
async fn open_within(conn: &quinn::Connection, i: usize) -> (quinn::SendStream, quinn::RecvStream) {
    tokio::time::timeout(Duration::from_secs(5), conn.open_bi())
        .await
        .unwrap_or_else(|_| panic!("stream {i}: no stream credit"))
        .unwrap()
}

/// Listening on a wildcard address, the server answers from the address each client sent
/// to: a QUIC client drops packets from any other. Here the client sends to 127.0.0.2 from
/// 127.0.0.1, and the kernel alone would answer from 127.0.0.1.
#[test]
fn on_a_wildcard_address_replies_leave_from_the_address_the_client_used() {
    let (handle, bound, cert) = engine_on("0.0.0.0:0", json!({}));
    let server = SocketAddr::from(([127, 0, 0, 2], bound.port()));
    let (echo, udp) = (tcp_echo(), udp_echo());
    runtime().block_on(async {
        let conn = tokio::time::timeout(Duration::from_secs(10), connect(server, &cert, false))
            .await
            .expect("no handshake within 10 s: the answers came from another address");
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        tcp_echo_through(&conn, echo).await;
        // A UDP session's replies too (datagrams on the same connection).
        conn.send_datagram(udp_message(1, (0, 1), &udp.to_string(), b"ping"))
            .unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), conn.read_datagram())
            .await
            .expect("a UDP reply within 5 s")
            .unwrap();
        assert_eq!(UdpMessage::parse(&reply).unwrap().payload, b"ping");
    });
    handle.stop(Duration::from_secs(1));
}

#[test]
fn udp_replies_reach_a_client_that_omits_the_datagram_limit() {
    let (handle, server, cert) = engine(json!({"down_mbps": 100}));
    let echo = udp_echo();
    let mut sent = 0;
    runtime().block_on(async {
        let conn = connect(server, &cert, true).await;
        let ok = auth(&conn, PASSWORD).await;
        assert_eq!(ok.status, 233, "{ok:?}");
        assert_eq!(field(&ok, "hysteria-udp"), Some("true"));
        // The server's receive limit, in bytes per second.
        assert_eq!(field(&ok, "hysteria-cc-rx"), Some("12500000"));
        let address = echo.to_string();
        for i in 0..20u16 {
            let payload = format!("datagram {i}");
            let message = UdpMessage {
                session_id: 7,
                packet_id: 0,
                frag_id: 0,
                frag_count: 1,
                address: address.as_bytes(),
                payload: payload.as_bytes(),
            };
            let mut out = Vec::new();
            message.encode(&mut out);
            conn.send_datagram(Bytes::from(out)).unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(5), conn.read_datagram())
                .await
                .expect("a reply within 5 s")
                .unwrap();
            let reply = UdpMessage::parse(&reply).unwrap();
            assert_eq!(reply.session_id, 7);
            assert_eq!(reply.address, address.as_bytes());
            assert_eq!(reply.payload, payload.as_bytes());
            sent += payload.len() as u64;
        }
    });
    assert_eq!(
        settled_traffic(&handle, "u", (sent, sent)),
        (sent, sent),
        "UDP payload counted each way"
    );
    handle.stop(Duration::from_secs(1));
}

#[test]
fn wrong_password_and_other_requests_get_the_masquerade() {
    let (handle, server, cert) = engine(json!({}));
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        let wrong = auth(&conn, "not the password").await;
        assert_eq!(wrong.status, 404);
        assert_eq!(wrong.body, b"404 page not found\n");
        assert_eq!(
            field(&wrong, "content-type"),
            Some("text/plain; charset=utf-8")
        );
        let mut get = Vec::new();
        http3::push_headers_frame(
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/"),
            ],
            &mut get,
        );
        let page = exchange(&conn, &get).await;
        assert_eq!((page.status, &page.body), (wrong.status, &wrong.body));
        assert_eq!(dated(&page), dated(&wrong), "the same answer either way");
        // Before authentication 0x401 is an unknown frame type, skipped as any HTTP/3 server
        // skips one: a request behind it gets the same answer.
        let mut behind = Vec::new();
        http3::push_frame_header(tcp::TCP_REQUEST, 0, &mut behind);
        behind.extend_from_slice(&get);
        let page = exchange(&conn, &behind).await;
        assert_eq!((page.status, &page.body), (wrong.status, &wrong.body));
        // Not authenticated: a TCP request gets no relay.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut request = Vec::new();
        tcp::encode_request(&tcp_echo().to_string(), b"", &mut request);
        send.write_all(&request).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 16)).await;
        assert!(
            !matches!(got, Ok(Ok(ref b)) if !b.is_empty()),
            "an unauthenticated TCP request was answered: {got:?}"
        );
    });
    assert_eq!(user_traffic(&handle, "u").uplink, 0);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn a_configured_masquerade_answers_every_request() {
    let (handle, server, cert) = engine(json!({
        "masquerade": {
            "type": "string", "status_code": 200, "content": "<h1>It works</h1>",
            "headers": {"Content-Type": "text/html", "Server": "nginx"},
        },
        "ignore_client_bandwidth": true,
    }));
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        let ok = auth(&conn, PASSWORD).await;
        assert_eq!(ok.status, 233);
        assert_eq!(field(&ok, "hysteria-cc-rx"), Some("auto"));
        let page = auth(&conn, "guess").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body, b"<h1>It works</h1>");
        assert_eq!(field(&page, "content-type"), Some("text/html"));
        assert_eq!(field(&page, "server"), Some("nginx"));
        assert_eq!(field(&page, "content-length"), Some("17"));
        // HEAD: the same head, no body.
        let head = exchange(&conn, &request("HEAD", "/")).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "a body to HEAD");
        assert_eq!(dated(&head), dated(&page));
    });
    handle.stop(Duration::from_secs(1));
}

/// The HTTP/3 layer answers as the reference's (quic-go's) does: its SETTINGS say a request
/// head may have 1 MiB of fields (and extended CONNECT); a head of 64 KiB is an ordinary
/// request; one over the limit, by its frame or by what its fields decode to, gets
/// STOP_SENDING (H3_EXCESSIVE_LOAD) and status 431; a field section that does not decode is
/// reset with QPACK_DECOMPRESSION_FAILED; a DATA frame first closes the connection with
/// H3_FRAME_UNEXPECTED.
#[test]
fn request_heads_are_answered_as_the_reference_answers_them() {
    let (handle, server, cert) = engine(json!({}));
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        let mut control = conn.accept_uni().await.unwrap();
        let settings = control.read_chunk(64, true).await.unwrap().unwrap().bytes;
        assert_eq!(
            &settings[..],
            [0x00, 0x04, 0x07, 0x06, 0x80, 0x10, 0x00, 0x00, 0x08, 0x01]
        );
        // 64 KiB of fields: answered like any request (the masquerade's 404).
        let big = vec![b'a'; 64 << 10];
        let mut wire = Vec::new();
        http3::push_headers_frame(
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"www.example.com"),
                (b":path", b"/"),
                (b"x-big", &big),
            ],
            &mut wire,
        );
        assert_eq!(exchange(&conn, &wire).await.status, 404);
        // A HEADERS frame over 1 MiB, refused from its length.
        let mut over = Vec::new();
        http3::push_frame_header(http3::HEADERS, (1 << 20) + 1, &mut over);
        over.extend_from_slice(&[0; 64]);
        // 30 000 one-byte references to `:method GET` (42 bytes each as RFC 9114 counts):
        // a small frame whose fields pass 1 MiB.
        let mut refs = vec![0x00, 0x00];
        refs.resize(30_000, 0xd1);
        let mut expanding = Vec::new();
        http3::push_frame_header(http3::HEADERS, refs.len(), &mut expanding);
        expanding.extend_from_slice(&refs);
        for wire in [over, expanding] {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&wire).await.unwrap();
            let answer = read_response(&mut recv).await;
            assert_eq!(answer.status, 431, "{answer:?}");
            assert!(answer.body.is_empty());
            let stopped = send.stopped().await.unwrap();
            assert_eq!(stopped.map(|c| c.into_inner()), Some(0x107));
        }
        // A field section that does not decode.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0x01, 0x03, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        send.finish().unwrap();
        match recv.read_to_end(1 << 16).await {
            Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
                assert_eq!(code.into_inner(), 0x200)
            }
            other => panic!("not reset: {other:?}"),
        }
        // A request stream that begins with DATA.
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0x00, 0x01, b'x']).await.unwrap();
        match conn.closed().await {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(close.error_code.into_inner(), 0x105)
            }
            other => panic!("closed otherwise: {other}"),
        }
    });
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// The first packet the server answers a new client's Initial with: its long-header type
/// (0 Initial, 3 Retry; RFC 9000 section 17.2).
fn answer_to_a_new_initial(server: SocketAddr, cert: &Trusted) -> u8 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    send_initial(&socket, server, cert);
    let mut answer = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut answer).expect("an answer within 5 s");
    // The fixed bit may be greased (RFC 9287), the form bit not.
    assert!(n > 0 && answer[0] & 0x80 != 0, "not a long header");
    (answer[0] >> 4) & 0x03
}

/// Sends the Initial packet of a new QUIC connection to `server` from `socket`, and nothing
/// more: the handshake stays in progress at the server.
fn send_initial(socket: &std::net::UdpSocket, server: SocketAddr, cert: &Trusted) {
    use std::sync::Arc;
    let crypto = quinn_proto::crypto::rustls::QuicClientConfig::try_from(tls(cert)).unwrap();
    let config = quinn_proto::ClientConfig::new(Arc::new(crypto));
    let mut client = quinn_proto::Endpoint::new(
        Arc::new(quinn_proto::EndpointConfig::default()),
        None,
        true,
        None,
    );
    let now = std::time::Instant::now();
    let (_, mut conn) = client.connect(now, config, server, "localhost").unwrap();
    let mut packet = Vec::new();
    let t = conn.poll_transmit(now, 1, &mut packet).unwrap();
    socket.send_to(&packet[..t.size], server).unwrap();
}

/// Under a flood of handshakes that go nowhere (Initial packets from addresses that may be
/// forged), a new client must first prove its address: past 64 handshakes in progress on a
/// worker its Initial is answered with a Retry, and a real client, which follows it,
/// connects as before.
#[test]
fn a_flood_of_handshakes_makes_new_clients_prove_their_address() {
    let (handle, server, cert) = engine(json!({}));
    assert_eq!(
        answer_to_a_new_initial(server, &cert),
        0,
        "an Initial at first"
    );
    let flood = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..64 {
        send_initial(&flood, server, &cert);
    }
    // The flood has been taken in once the server answers a later packet.
    assert_eq!(
        answer_to_a_new_initial(server, &cert),
        3,
        "a Retry under the flood"
    );
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
    });
    handle.stop(Duration::from_secs(1));
}

/// A configured `204` answer carries no content-length and no body (its configured content
/// is not sent), as RFC 9110 requires.
#[test]
fn a_no_content_masquerade_has_no_length() {
    let (handle, server, cert) = engine(json!({
        "masquerade": {"type": "string", "status_code": 204, "content": "not sent"},
    }));
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        let page = auth(&conn, "guess").await;
        assert_eq!(page.status, 204);
        assert_eq!(field(&page, "content-length"), None);
        assert!(page.body.is_empty(), "a body with 204");
        dated(&page);
    });
    handle.stop(Duration::from_secs(1));
}

/// A request for `path` with `method`, as a browser would send it.
fn request(method: &str, path: &str) -> Vec<u8> {
    let mut r = Vec::new();
    http3::push_headers_frame(
        &[
            (b":method", method.as_bytes()),
            (b":scheme", b"https"),
            (b":authority", b"www.example.com"),
            (b":path", path.as_bytes()),
        ],
        &mut r,
    );
    r
}

#[test]
fn a_static_site_masquerade_serves_its_files() {
    let dir = std::env::temp_dir().join(format!("marzneshin-e2e-site-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("blog")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>Welcome</h1>").unwrap();
    std::fs::write(dir.join("blog/index.html"), "posts").unwrap();
    std::fs::write(dir.join("app.js"), "let a = 1;").unwrap();
    let (handle, server, cert) = engine(json!({
        "masquerade": {"type": "file", "dir": dir},
    }));
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        // A wrong password gets what the site has at /auth: nothing.
        let page = auth(&conn, "guess").await;
        assert_eq!(page.status, 404);
        assert_eq!(page.body, b"404 page not found\n");
        let home = exchange(&conn, &request("GET", "/")).await;
        assert_eq!(
            (home.status, &home.body[..]),
            (200, &b"<h1>Welcome</h1>"[..])
        );
        assert_eq!(field(&home, "content-type"), Some("text/html"));
        let script = exchange(&conn, &request("GET", "/app.js?v=2")).await;
        assert_eq!(script.body, b"let a = 1;");
        assert_eq!(field(&script, "content-type"), Some("text/javascript"));
        let head = exchange(&conn, &request("HEAD", "/index.html")).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(field(&head, "content-length"), Some("16"));
        dated(&head);
        let missing = exchange(&conn, &request("HEAD", "/missing")).await;
        assert_eq!(missing.status, 404);
        assert!(missing.body.is_empty(), "a body to HEAD");
        assert_eq!(field(&missing, "content-length"), Some("19"));
        let dir_page = exchange(&conn, &request("GET", "/blog")).await;
        assert_eq!(dir_page.status, 301);
        assert_eq!(field(&dir_page, "location"), Some("/blog/"));
        let posts = exchange(&conn, &request("GET", "/blog/")).await;
        assert_eq!(posts.body, b"posts");
        let escape = exchange(&conn, &request("GET", "/../../etc/passwd")).await;
        assert_eq!(escape.status, 404);
        // The client still authenticates as usual.
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
    });
    handle.stop(Duration::from_secs(1));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn malformed_requests_and_garbage_packets_leave_the_server_serving() {
    let (handle, server, cert) = engine(json!({}));
    let echo = tcp_echo();
    // Garbage datagrams at the port, before anything else.
    let garbage = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for len in [1usize, 20, 1200, 1500] {
        let junk: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        garbage.send_to(&junk, server).unwrap();
    }
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        // A HEADERS frame whose field section does not decode: the stream is refused.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0x01, 0x03, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        send.finish().unwrap();
        assert!(
            recv.read_to_end(1 << 16).await.is_err(),
            "a malformed request was answered"
        );
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        let bad_requests: Vec<Vec<u8>> = vec![
            // 0x401 with an empty address.
            vec![0x44, 0x01, 0x00, 0x00],
            // An address longer than the protocol allows.
            vec![0x44, 0x01, 0x80, 0x00, 0x13, 0x88],
            // Padding longer than the protocol allows.
            {
                let mut r = vec![0x44, 0x01, 0x0e];
                r.extend_from_slice(b"127.0.0.1:9999");
                r.extend_from_slice(&[0x80, 0x00, 0x20, 0x00]);
                r
            },
            // An address that is not host:port.
            {
                let mut r = vec![0x44, 0x01, 0x06];
                r.extend_from_slice(b"nohost");
                r.push(0);
                r
            },
        ];
        for request in bad_requests {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&request).await.unwrap();
            let got = recv.read_to_end(1 << 16).await;
            assert!(got.is_err(), "{request:02x?} was answered: {got:?}");
        }
        // Garbage datagrams inside the connection are dropped.
        conn.send_datagram(Bytes::from_static(b"\x00\x00\x00\x01\x00"))
            .unwrap();
        conn.send_datagram(Bytes::from_static(&[0xff; 40])).unwrap();
        // Messages whose address is not host:port open no UDP session (and no socket).
        for session_id in 1..=50 {
            let message = UdpMessage {
                session_id,
                packet_id: 0,
                frag_id: 0,
                frag_count: 1,
                address: b"nohost",
                payload: b"x",
            };
            let mut out = Vec::new();
            message.encode(&mut out);
            conn.send_datagram(Bytes::from(out)).unwrap();
        }
        // The same connection still relays (after those datagrams: they have been handled).
        tcp_echo_through(&conn, echo).await;
        let open = user_traffic(&handle, "u").open;
        assert!(
            open <= 1,
            "{open} open: only the TCP stream just used may count"
        );
        // The same connection still relays.
        tcp_echo_through(&conn, echo).await;
        conn.close(0u32.into(), b"done");
        tokio::time::sleep(Duration::from_millis(100)).await;
    });
    // Nothing is left behind once the client has closed.
    assert_connections_freed(&handle);
    // And a new client is served.
    runtime().block_on(async {
        let conn = connect(server, &cert, true).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        tcp_echo_through(&conn, echo).await;
    });
    handle.stop(Duration::from_secs(1));
}

#[test]
fn a_reverse_proxy_masquerade_answers_with_the_site() {
    let (site, seen) = http_site("the operator's own site");
    let (handle, server, cert) = engine(json!({
        "masquerade": {"type": "proxy", "address": site},
    }));
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        let page = auth(&conn, "guess").await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body, b"the operator's own site");
        assert_eq!(field(&page, "content-type"), Some("text/plain"));
        let mut get = Vec::new();
        http3::push_headers_frame(
            &[
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"www.example.com"),
                (b":path", b"/index.html?x=1"),
                (b"user-agent", b"probe"),
            ],
            &mut get,
        );
        let page = exchange(&conn, &get).await;
        assert_eq!(page.status, 200);
        assert_eq!(page.body, b"the operator's own site");
        // The site sends no date: the answer gets one, as from any server.
        dated(&page);
        // HEAD: the site's length, no body.
        let head = exchange(&conn, &request("HEAD", "/index.html")).await;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty(), "a body to HEAD");
        assert_eq!(field(&head, "content-length"), Some("23"));
        // The client still authenticates as usual.
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
    });
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "one site request per masqueraded request");
    let first = String::from_utf8_lossy(&seen[0]);
    assert!(
        first.starts_with("POST /auth HTTP/1.1\r\nHost: hysteria\r\n"),
        "{first}"
    );
    assert!(
        !first.contains("guess"),
        "the password went to the site: {first}"
    );
    let second = String::from_utf8_lossy(&seen[1]);
    assert!(
        second.starts_with("GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\n"),
        "{second}"
    );
    assert!(second.contains("user-agent: probe\r\n"), "{second}");
    handle.stop(Duration::from_secs(1));

    // A site that is down: 502, as from any reverse proxy.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = down.local_addr().unwrap();
    drop(down);
    let (handle, server, cert) = engine(json!({
        "masquerade": {"type": "proxy", "address": address},
    }));
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, "guess").await.status, 502);
    });
    handle.stop(Duration::from_secs(1));
}

/// Streams are freed when done, however the client ends them: far more streams than the
/// concurrent limit (1024) go one after another over one connection, each stopped by the
/// client after its echo (STOP_SENDING before our end, as sing-box does on close).
#[test]
fn many_streams_one_after_another() {
    let (handle, server, cert) = engine(json!({}));
    let echo = tcp_echo();
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        for i in 0..1500 {
            let (mut send, mut recv) = open_within(&conn, i).await;
            let mut request = Vec::new();
            tcp::encode_request(&echo.to_string(), b"", &mut request);
            request.extend_from_slice(b"ping");
            send.write_all(&request).await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let start = loop {
                let n = recv.read(&mut buf).await.unwrap().expect("a response");
                got.extend_from_slice(&buf[..n]);
                if let Progress::Done(r) = tcp::parse_response(&got).unwrap() {
                    break r.consumed;
                }
            };
            while got.len() < start + 4 {
                let n = recv.read(&mut buf).await.unwrap().expect("the echo");
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(&got[start..], b"ping");
            // Done: stop reading before the server's end, and finish sending.
            let _ = recv.stop(0u32.into());
            send.finish().unwrap();
        }
    });
    handle.stop(Duration::from_secs(1));
}

/// A TCP request for a host name of multi-byte characters that cannot be resolved: the error
/// answer quotes the name, cut to the protocol's 2048 bytes at a character boundary (a cut
/// inside a character used to panic the worker), and the connection goes on relaying.
#[test]
fn an_unresolvable_non_ascii_host_gets_an_error_answer() {
    let (handle, server, cert) = engine(json!({}));
    let echo = tcp_echo();
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        // "cannot resolve " is 15 bytes, so byte 2048 of the message falls inside a character.
        let host = "é".repeat(1017);
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut request = Vec::new();
        tcp::encode_request(&format!("{host}:80"), b"", &mut request);
        send.write_all(&request).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(20), recv.read_to_end(1 << 16))
            .await
            .expect("no answer")
            .expect("the error answer");
        let Progress::Done(r) = tcp::parse_response(&got).unwrap() else {
            panic!("a truncated answer: {got:02x?}")
        };
        assert!(!r.ok, "an unresolvable host was connected");
        let message = std::str::from_utf8(&got[r.message.clone()]).expect("UTF-8");
        assert!(message.len() <= 2048, "{} bytes", message.len());
        assert!(message.contains("éé"), "{message:.80}");
        // The worker is alive and the connection still relays.
        tcp_echo_through(&conn, echo).await;
    });
    handle.stop(Duration::from_secs(1));
}

/// Streams the client gives up on before they carry a request (ended, or stuffed with frames
/// the server skips) are reset, so they end on both sides and give their credit back: more
/// of them than the stream limit (1024) go one after another over one connection.
#[test]
fn streams_abandoned_before_a_request_are_reset_and_freed() {
    let (handle, server, cert) = engine(json!({}));
    let echo = tcp_echo();
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        for i in 0..1100 {
            let (mut send, mut recv) = open_within(&conn, i).await;
            // Half a frame type, then the end.
            send.write_all(&[0x44]).await.unwrap();
            send.finish().unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16))
                .await
                .unwrap_or_else(|_| panic!("stream {i} stays open"));
            assert!(got.is_err(), "stream {i} was answered: {got:?}");
        }
        // Unknown frames (type 0x21, which HTTP/3 says to skip) where the request head
        // should be, more than a head may take: the stream is reset, not read on.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut junk = Vec::new();
        for _ in 0..8 {
            http3::push_frame_header(0x21, 16_000, &mut junk);
            junk.extend(std::iter::repeat_n(0u8, 16_000));
        }
        let _ = send.write_all(&junk).await;
        let got = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16))
            .await
            .expect("the stuffed stream stays open");
        assert!(got.is_err(), "the stuffed stream was answered: {got:?}");
        tcp_echo_through(&conn, echo).await;
    });
    handle.stop(Duration::from_secs(1));
}

/// Encodes one UDP message of session `session_id` to `address`.
fn udp_message(session_id: u32, frag: (u8, u8), address: &str, payload: &[u8]) -> Bytes {
    let message = UdpMessage {
        session_id,
        packet_id: 1,
        frag_id: frag.0,
        frag_count: frag.1,
        address: address.as_bytes(),
        payload,
    };
    let mut out = Vec::new();
    message.encode(&mut out);
    Bytes::from(out)
}

/// Descriptors open in this process (the engine runs in it).
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn udp_sessions_open_sockets_only_for_complete_allowed_packets() {
    let (handle, server, cert) = engine(json!({}));
    let echo = udp_echo();
    let tcp = tcp_echo();
    let refused = udp_echo();
    let deny =
        json!({"rules": [{"action": "deny", "network": ["udp"], "ports": [refused.port()]}]});
    handle
        .set_routing(Some(serde_json::from_value(deny).unwrap()))
        .unwrap();
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        tcp_echo_through(&conn, tcp).await;
        let before = open_descriptors();
        // First fragments of 200 sessions (never completed) to an allowed address, and whole
        // packets of 200 more to a refused one, each refused packet sent twice.
        for id in 1..=200 {
            let first = udp_message(id, (0, 2), &echo.to_string(), b"half");
            conn.send_datagram(first).unwrap();
            let denied = udp_message(1000 + id, (0, 1), &refused.to_string(), b"no");
            conn.send_datagram(denied.clone()).unwrap();
            conn.send_datagram(denied).unwrap();
        }
        // After those datagrams (the stream comes after them): nothing opened for them.
        tcp_echo_through(&conn, tcp).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let open = user_traffic(&handle, "u").open;
        assert!(open <= 2, "{open} open: only the TCP streams may count");
        let now = open_descriptors();
        assert!(
            now < before + 20,
            "{before} descriptors before, {now} after: sockets opened for no packet"
        );
        // A refused session is gone, not stuck: its id opens a session for an allowed packet,
        // and the session with a fragment in flight completes its packet.
        conn.send_datagram(udp_message(1001, (0, 1), &echo.to_string(), b"allowed"))
            .unwrap();
        conn.send_datagram(udp_message(1, (1, 2), &echo.to_string(), b"-done"))
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let reply = tokio::time::timeout(Duration::from_secs(5), conn.read_datagram())
                .await
                .expect("a reply within 5 s")
                .unwrap();
            let reply = UdpMessage::parse(&reply).unwrap();
            got.push((reply.session_id, reply.payload.to_vec()));
        }
        got.sort();
        assert_eq!(
            got,
            [(1, b"half-done".to_vec()), (1001, b"allowed".to_vec())]
        );
        conn.close(0u32.into(), b"done");
    });
    handle.stop(Duration::from_secs(1));
}

#[test]
fn a_client_reset_aborts_the_target_connection() {
    let (handle, server, cert) = engine(json!({}));
    // A target that reports how its client's upload ended.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap();
    let (ended, upload_end) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"hello from the target").unwrap();
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) => break Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e.kind()),
            }
        };
        ended.send(end).unwrap();
        // Held open: the downlink must stop because of the reset, not because we closed.
        std::thread::sleep(Duration::from_secs(3));
    });
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        // The answer and the target's greeting: the relay runs both ways.
        let (mut send, mut recv, greeting) = tcp_exchange(&conn, target, b"uploading", 21).await;
        assert_eq!(greeting, b"hello from the target");
        send.reset(7u32.into()).unwrap();
        let end =
            tokio::task::spawn_blocking(move || upload_end.recv_timeout(Duration::from_secs(5)))
                .await
                .unwrap()
                .expect("the target's connection ends within 5 s");
        assert_eq!(
            end,
            Err(std::io::ErrorKind::ConnectionReset),
            "the target saw a clean end of the upload"
        );
        // And the download stops: the client's stream is reset too, not finished.
        let rest = tokio::time::timeout(Duration::from_secs(2), recv.read_to_end(1 << 16))
            .await
            .expect("the download ends at once");
        assert!(rest.is_err(), "the download ended cleanly: {rest:?}");
    });
    handle.stop(Duration::from_secs(1));
}

#[test]
fn udp_replies_dropped_for_a_full_datagram_buffer_are_not_counted() {
    let (handle, server, cert) = engine(json!({}));
    // A target that answers one packet, 100 ms later, with 3 000 replies of 1 000 bytes.
    let flood = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = flood.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let (_, from) = flood.recv_from(&mut buf).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..3000 {
            flood.send_to(&[7u8; 1000], from).unwrap();
            if i % 50 == 49 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    runtime().block_on(async {
        let conn = connect(server, &cert, false).await;
        assert_eq!(auth(&conn, PASSWORD).await.status, 233);
        conn.send_datagram(udp_message(1, (0, 1), &target.to_string(), b"go"))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The client freezes (its runtime blocked): it acknowledges nothing, so the server's
        // congestion window stays full and its datagram send buffer (1 MiB) fills up.
        std::thread::sleep(Duration::from_millis(1500));
        let down = user_traffic(&handle, "u").downlink;
        assert!(down > 0, "no reply reached the server");
        assert!(
            down <= (1 << 20) + (256 << 10),
            "{down} bytes counted down: more than quinn could hold or send"
        );
    });
    handle.stop(Duration::from_secs(1));
}
