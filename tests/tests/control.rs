//! The control plane while traffic flows: live user changes, exact counters, limits, live
//! inbound changes.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use e2e::*;
use engine::{Limits, UserInbound, UserSpec};
use proto::shadowsocks::udp::UdpClient;
use proto::shadowsocks::{Key, Method};
use serde_json::json;

const PSK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const M: Method = Method::Blake3Aes256Gcm;

/// A distinct valid 2022 key per user number.
fn key(i: u8) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    // 32 bytes of value `i + 1`: base64 of a constant byte repeats a 4-character group.
    let b = [i + 1; 3];
    let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
    let group: String = (0..4)
        .map(|k| T[(n >> (18 - 6 * k) & 63) as usize] as char)
        .collect();
    let tail_n = (b[0] as u32) << 16 | (b[1] as u32) << 8;
    let tail: String = (0..3)
        .map(|k| T[(tail_n >> (18 - 6 * k) & 63) as usize] as char)
        .collect();
    format!("{}{}=", group.repeat(10), tail)
}

fn engine_with(users: &[(&str, u8)]) -> engine::Handle {
    let users: Vec<_> = users
        .iter()
        .map(|(n, i)| json!({"name": n, "password": key(*i)}))
        .collect();
    start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
            "settings": {"method": M.name(), "psk": PSK, "users": users}}],
    }))
}

fn spec(name: &str, i: u8, limits: Limits) -> UserSpec {
    UserSpec {
        name: name.into(),
        inbounds: vec![UserInbound {
            tag: "ss".into(),
            password: key(i),
        }],
        limits,
    }
}

/// A Shadowsocks UDP client (a session of its own) for user number `i`.
fn udp_client(i: u8) -> UdpClient {
    UdpClient::new(
        M,
        Key::from_password(M, &key(i)).unwrap(),
        Some(Key::from_password(M, PSK).unwrap()),
        rand::random(),
    )
}

fn connect(h: &engine::Handle, i: u8, echo: SocketAddr) -> std::io::Result<SsClient> {
    SsClient::connect(
        h.local_addr("ss").unwrap(),
        M,
        &key(i),
        Some(PSK),
        echo,
        b"hi",
    )
}

#[test]
fn users_change_while_fifty_connections_relay_and_counters_are_exact() {
    let h = engine_with(&[("base", 0)]);
    let echo = tcp_echo();
    let stop = Arc::new(AtomicBool::new(false));
    let moved = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let mut c = connect(&h, 0, echo).unwrap();
            assert_eq!(c.recv_exact(2).unwrap(), b"hi");
            let (stop, moved) = (Arc::clone(&stop), Arc::clone(&moved));
            thread::spawn(move || -> std::io::Result<()> {
                let msg = [7u8; 1000];
                while !stop.load(Ordering::Relaxed) {
                    c.send(&msg)?;
                    if c.recv_exact(msg.len())? != msg {
                        return Err(std::io::Error::other("corrupted"));
                    }
                    moved.fetch_add(msg.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(300));
    for round in 0..10u8 {
        let batch: Vec<UserSpec> = (0..20u8)
            .map(|j| {
                spec(
                    &format!("new{round}-{j}"),
                    10 + round * 20 + j,
                    Limits::default(),
                )
            })
            .collect();
        h.upsert_users(batch).unwrap();
        thread::sleep(Duration::from_millis(50));
    }
    // A newly added user can connect at once.
    let mut fresh = connect(&h, 10, echo).unwrap();
    assert_eq!(fresh.recv_exact(2).unwrap(), b"hi");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join()
            .unwrap()
            .expect("no connection may drop while users change");
    }
    let total = 50 * 2 + moved.load(Ordering::Relaxed);
    assert_eq!(settled_traffic(&h, "base", (total, total)), (total, total));
    h.stop(Duration::from_secs(1));
}

#[test]
fn removing_a_user_closes_their_tcp_connection_within_a_second() {
    let h = engine_with(&[("alice", 0), ("bob", 1)]);
    let echo = tcp_echo();
    let mut alice = connect(&h, 0, echo).unwrap();
    let mut bob = connect(&h, 1, echo).unwrap();
    assert_eq!(alice.recv_exact(2).unwrap(), b"hi");
    assert_eq!(bob.recv_exact(2).unwrap(), b"hi");
    let started = Instant::now();
    assert_eq!(h.remove_users(&["alice".to_string()]).unwrap(), 1);
    alice
        .stream()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    alice
        .expect_closed()
        .expect("alice's connection must close");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
    // Bob is untouched; alice can no longer connect.
    bob.send(b"ok").unwrap();
    assert_eq!(bob.recv_exact(2).unwrap(), b"ok");
    let mut again = connect(&h, 0, echo).unwrap();
    again
        .stream()
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(again.recv_exact(2).is_err());
    let alice_stats = h
        .user_stats()
        .into_iter()
        .find(|u| u.name == "alice")
        .unwrap();
    assert!(!alice_stats.active);
    assert_eq!(
        alice_stats.traffic.uplink, 2,
        "counters stay readable after removal"
    );
    h.stop(Duration::from_secs(1));
}

#[test]
fn removing_a_user_ends_their_udp_session_within_a_second() {
    let h = engine_with(&[("alice", 0)]);
    let echo = udp_echo();
    let server = h.local_addr("ss").unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut client = udp_client(0);
    let roundtrip = |client: &mut UdpClient, wait: Duration| {
        sock.set_read_timeout(Some(wait)).unwrap();
        ss_udp_roundtrip(server, &sock, client, echo)
    };
    assert!(roundtrip(&mut client, RELAYED));
    let open = |h: &engine::Handle| {
        h.user_stats()
            .into_iter()
            .find(|u| u.name == "alice")
            .unwrap()
            .traffic
            .open
    };
    assert_eq!(open(&h), 1);
    let started = Instant::now();
    h.remove_users(&["alice".to_string()]).unwrap();
    while open(&h) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "UDP session still open"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !roundtrip(&mut client, SILENT),
        "a removed user's packets must not be relayed"
    );
    h.stop(Duration::from_secs(1));
}

#[test]
fn moving_a_user_off_an_inbound_closes_only_that_inbound() {
    let h = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "inbounds": [
            {"tag": "a", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "shadowsocks",
             "settings": {"method": "aes-128-gcm", "users": [{"name": "u", "password": "pa"}]}},
            {"tag": "b", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "shadowsocks",
             "settings": {"method": "aes-128-gcm", "users": [{"name": "u", "password": "pb"}]}}],
    }));
    let echo = tcp_echo();
    let m = Method::Aes128Gcm;
    let mut on_a =
        SsClient::connect(h.local_addr("a").unwrap(), m, "pa", None, echo, b"1").unwrap();
    let mut on_b =
        SsClient::connect(h.local_addr("b").unwrap(), m, "pb", None, echo, b"2").unwrap();
    assert_eq!(on_a.recv_exact(1).unwrap(), b"1");
    assert_eq!(on_b.recv_exact(1).unwrap(), b"2");
    h.upsert_users(vec![UserSpec {
        name: "u".into(),
        inbounds: vec![UserInbound {
            tag: "b".into(),
            password: "pb".into(),
        }],
        limits: Limits::default(),
    }])
    .unwrap();
    on_a.stream()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    on_a.expect_closed().unwrap();
    on_b.send(b"3").unwrap();
    assert_eq!(on_b.recv_exact(1).unwrap(), b"3");
    h.stop(Duration::from_secs(1));
}

#[test]
fn bad_batches_change_nothing() {
    let h = engine_with(&[("alice", 0)]);
    let err = h.upsert_users(vec![
        spec("x", 3, Limits::default()),
        UserSpec {
            name: "y".into(),
            inbounds: vec![UserInbound {
                tag: "nope".into(),
                password: key(4),
            }],
            limits: Limits::default(),
        },
    ]);
    assert!(
        matches!(err, Err(engine::EngineError::UnknownInbound { .. })),
        "{err:?}"
    );
    let err = h.upsert_users(vec![UserSpec {
        name: "z".into(),
        inbounds: vec![UserInbound {
            tag: "ss".into(),
            password: "short".into(),
        }],
        limits: Limits::default(),
    }]);
    assert!(
        matches!(err, Err(engine::EngineError::BadCredential { .. })),
        "{err:?}"
    );
    // Same key as alice: refused, alice unaffected.
    let err = h.upsert_users(vec![spec("dup", 0, Limits::default())]);
    assert!(
        matches!(err, Err(engine::EngineError::BadCredential { .. })),
        "{err:?}"
    );
    assert!(h
        .user_stats()
        .iter()
        .all(|u| u.name == "alice" || !u.active));
    let echo = tcp_echo();
    let mut c = connect(&h, 0, echo).unwrap();
    assert_eq!(c.recv_exact(2).unwrap(), b"hi");
    h.stop(Duration::from_secs(1));
    assert!(matches!(
        h.upsert_users(vec![]),
        Err(engine::EngineError::Stopped)
    ));
}

#[test]
fn bandwidth_limit_caps_the_user_across_connections() {
    let h = engine_with(&[("slow", 0)]);
    let rate = 1_000_000u64;
    h.upsert_users(vec![spec(
        "slow",
        0,
        Limits {
            uplink_bytes_per_sec: Some(rate),
            downlink_bytes_per_sec: Some(rate),
            ..Limits::default()
        },
    )])
    .unwrap();
    let echo = tcp_echo();
    // Two connections: the limit holds for the user as a whole, across workers.
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut c = connect(&h, 0, echo).unwrap();
            c.recv_exact(2).unwrap();
            let mut reader = c.try_clone_reader();
            let (received, stop) = (Arc::clone(&received), Arc::clone(&stop));
            let writer = thread::spawn(move || {
                let chunk = [1u8; 16 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if c.send(&chunk).is_err() {
                        break;
                    }
                }
            });
            let reader = thread::spawn(move || {
                while let Ok(n) = reader.recv_some() {
                    received.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
            (writer, reader)
        })
        .collect();
    // Measure over 5 s after a 1 s warm-up (socket buffers fill during warm-up).
    thread::sleep(Duration::from_secs(1));
    let start_bytes = received.load(Ordering::Relaxed);
    let start = Instant::now();
    thread::sleep(Duration::from_secs(5));
    let bytes = received.load(Ordering::Relaxed) - start_bytes;
    let measured = bytes as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    h.stop(Duration::from_millis(100));
    for (w, r) in threads {
        let _ = w.join();
        let _ = r.join();
    }
    // At most the limit, give or take the burst; at least most of it (a client thread not
    // scheduled for a while on a loaded machine loses some throughput for good).
    let ratio = measured / rate as f64;
    assert!(
        (0.75..=1.1).contains(&ratio),
        "measured {measured:.0} B/s for a {rate} B/s limit"
    );
}

#[test]
fn ip_limit_of_one_refuses_a_second_source_address() {
    let h = engine_with(&[("phone", 0)]);
    h.upsert_users(vec![spec(
        "phone",
        0,
        Limits {
            max_ips: Some(1),
            ..Limits::default()
        },
    )])
    .unwrap();
    let echo = tcp_echo();
    let server = h.local_addr("ss").unwrap();
    let from = |ip: [u8; 4]| {
        SsClient::connect_from(Some(ip.into()), server, M, &key(0), Some(PSK), echo, b"hi")
    };
    let mut first = from([127, 0, 0, 1]).unwrap();
    assert_eq!(first.recv_exact(2).unwrap(), b"hi");
    let mut same_ip = from([127, 0, 0, 1]).unwrap();
    assert_eq!(
        same_ip.recv_exact(2).unwrap(),
        b"hi",
        "a second connection from the same address is fine"
    );
    let mut second = from([127, 0, 0, 2]).unwrap();
    second
        .stream()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert!(
        second.recv_exact(2).is_err(),
        "a second source address must be refused"
    );
    let stats = h
        .user_stats()
        .into_iter()
        .find(|u| u.name == "phone")
        .unwrap();
    assert_eq!(
        stats.source_ips,
        vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    drop((first, same_ip));
    // Once the first address is gone, the second may connect.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut again = from([127, 0, 0, 2]).unwrap();
        again
            .stream()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        if again.recv_exact(2).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second address still refused after the first left"
        );
    }
    h.stop(Duration::from_secs(1));
}

#[test]
fn inbounds_change_live_without_touching_others() {
    let h = engine_with(&[("u", 0)]);
    let echo = tcp_echo();
    let mut live = connect(&h, 0, echo).unwrap();
    assert_eq!(live.recv_exact(2).unwrap(), b"hi");
    let ss = json!({"tag": "ss", "listen": h.local_addr("ss").unwrap().to_string(), "protocol": "shadowsocks",
        "settings": {"method": M.name(), "psk": PSK, "users": []}});
    let extra = json!({"tag": "extra", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "shadowsocks",
        "settings": {"method": "aes-256-gcm", "users": [{"name": "u", "password": "extra-pw"}]}});
    let parse =
        |v: serde_json::Value| serde_json::from_value::<engine::config::InboundConfig>(v).unwrap();
    h.apply_inbounds(vec![parse(ss.clone()), parse(extra)])
        .unwrap();
    // The untouched inbound keeps its connection and its users.
    live.send(b"still").unwrap();
    assert_eq!(live.recv_exact(5).unwrap(), b"still");
    let extra_addr = h.local_addr("extra").unwrap();
    let mut e = SsClient::connect(
        extra_addr,
        Method::Aes256Gcm,
        "extra-pw",
        None,
        echo,
        b"new",
    )
    .unwrap();
    assert_eq!(e.recv_exact(3).unwrap(), b"new");
    // Removing the extra inbound closes it and its connections.
    h.apply_inbounds(vec![parse(ss)]).unwrap();
    e.stream()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    e.expect_closed().unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    while std::net::TcpStream::connect(extra_addr).is_ok() {
        assert!(Instant::now() < deadline, "a removed inbound still accepts");
        thread::sleep(Duration::from_millis(10));
    }
    live.send(b"again").unwrap();
    assert_eq!(live.recv_exact(5).unwrap(), b"again");
    h.stop(Duration::from_secs(1));
}

/// A Shadowsocks UDP inbound's receive loop serves every user of its worker: a user over
/// their uplink rate has packets dropped (policed) rather than waited off in that loop, and
/// a packet for a name is resolved off it, so another user's packets go through at once.
#[test]
fn a_udp_user_over_their_rate_or_resolving_a_name_does_not_hold_up_the_others() {
    let users: Vec<_> = [("alice", 0u8), ("bob", 1)]
        .iter()
        .map(|(n, i)| json!({"name": n, "password": key(*i)}))
        .collect();
    // One worker: both users' packets go through the same receive loop.
    let h = start_engine(json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "inbounds": [{"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
            "settings": {"method": M.name(), "psk": PSK, "users": users}}],
    }));
    let rate = 10_000u64;
    h.upsert_users(vec![spec(
        "alice",
        0,
        Limits {
            uplink_bytes_per_sec: Some(rate),
            ..Limits::default()
        },
    )])
    .unwrap();
    let server = h.local_addr("ss").unwrap();
    let echo = udp_echo();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Alice: 30 packets of 1000 bytes at once (3 s of her rate; few enough that the server's
    // socket buffer keeps them all, and Bob's after them), then one for a name.
    let alice_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut alice = udp_client(0);
    let headroom = proto::shadowsocks::udp::UDP_HEADROOM;
    let mut buf = vec![7u8; headroom + 1000 + proto::shadowsocks::TAG_LEN];
    for _ in 0..30 {
        let frame = alice.encode(
            &mut buf,
            headroom..headroom + 1000,
            &proto::TargetAddr::Ip(echo),
            now,
            &rand::random(),
        );
        alice_sock.send_to(&buf[frame], server).unwrap();
    }
    let name = proto::TargetAddr::Domain("resolve-me.invalid".into(), 53);
    let frame = alice.encode(
        &mut buf,
        headroom..headroom + 10,
        &name,
        now,
        &rand::random(),
    );
    alice_sock.send_to(&buf[frame], server).unwrap();
    // Bob, right behind her: served within his read timeout.
    let bob_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    bob_sock
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut bob = udp_client(1);
    assert!(
        ss_udp_roundtrip(server, &bob_sock, &mut bob, echo),
        "bob's packet waited behind alice's"
    );
    // Alice got about a quarter second of burst and her rate, not her 30 000 bytes.
    thread::sleep(Duration::from_millis(300));
    let alice_up = h
        .user_stats()
        .into_iter()
        .find(|u| u.name == "alice")
        .unwrap()
        .traffic
        .uplink;
    assert!(
        alice_up < 15_000,
        "alice sent {alice_up} bytes at {rate} B/s"
    );
    h.stop(Duration::from_secs(1));
}

/// A client that connected before a user's password changed, and sends its header only after
/// (so the change's kick found nothing to close), is checked against the new password: the
/// old one no longer relays.
#[test]
fn a_connection_opened_before_a_password_change_cannot_use_the_old_one() {
    let h = engine_with(&[("alice", 0)]);
    let echo = tcp_echo();
    let server = h.local_addr("ss").unwrap();
    let early = std::net::TcpStream::connect(server).unwrap();
    thread::sleep(Duration::from_millis(200));
    // Alice's password becomes key 9's.
    h.upsert_users(vec![spec("alice", 9, Limits::default())])
        .unwrap();
    let mut c = SsClient::over(early, M, &key(0), Some(PSK), echo, b"old").unwrap();
    assert!(c.recv_exact(3).is_err(), "the old password relayed");
    // The new one does.
    let mut c = connect(&h, 9, echo).unwrap();
    assert_eq!(c.recv_exact(2).unwrap(), b"hi");
    h.stop(Duration::from_secs(1));
}
