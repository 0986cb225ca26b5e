//! Destination names in the running engine, with a lookup injected through
//! `EngineOptions::lookup` (names starting with `slow.` answer only when the test releases
//! them, or after 30 s, like a nameserver that drops queries; `loopback.test` is 127.0.0.1;
//! every other name goes to the system resolver): a slow lookup holds up no other name on its worker, over TCP and UDP,
//! and one past the deadline fails and closes its connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::*;
use proto::shadowsocks::udp::{UdpClient, UDP_HEADROOM};
use proto::shadowsocks::{Key, Method, TAG_LEN};
use proto::TargetAddr;
use serde_json::json;

const PASSWORD: &str = "secret";
const PSK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
const M: Method = Method::Blake3Aes256Gcm;
/// How long a slow lookup holds its resolver thread unless released.
const SLOW: Duration = Duration::from_secs(30);
/// How long an answer that should come promptly may take on a loaded machine.
const PROMPT: Duration = Duration::from_secs(10);

/// The injected lookup's two ends in the test: each slow lookup reports its start, and
/// returns (failing) when released.
struct SlowNames {
    started: mpsc::Receiver<String>,
    release: mpsc::Sender<()>,
}

impl SlowNames {
    /// Waits until a slow lookup of `name` holds a resolver thread.
    fn wait_started(&self, name: &str) {
        let got = self
            .started
            .recv_timeout(PROMPT)
            .expect("the slow lookup starts");
        assert_eq!(got, name);
    }

    /// Lets every slow lookup still held return.
    fn release_all(&self) {
        for _ in 0..8 {
            let _ = self.release.send(());
        }
    }
}

/// An engine with one worker (so every lookup is asked for by the same executor), plain
/// Trojan and Shadowsocks inbounds, loopback destinations allowed, and `connect_secs` as the
/// lookup deadline.
fn engine(connect_secs: u64) -> (engine::Handle, SlowNames) {
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let (started_tx, release_rx) = (Mutex::new(started_tx), Arc::new(Mutex::new(release_rx)));
    let lookup: engine::outbound::Lookup = Arc::new(move |host, port| {
        if host.starts_with("slow.") {
            let _ = started_tx.lock().unwrap().send(host.to_owned());
            let _ = release_rx.lock().unwrap().recv_timeout(SLOW);
            return Err(std::io::Error::other("the nameserver dropped the query"));
        }
        if host == "loopback.test" {
            return Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]);
        }
        engine::outbound::resolver::system_lookup(host, port)
    });
    let h = start_engine_with(
        json!({
            "workers": 1,
            "outbound": {"allow_loopback": true},
            "timeouts": {"connect_secs": connect_secs},
            "inbounds": [
                {"tag": "trojan", "listen": "127.0.0.1:0", "network": ["tcp"],
                 "protocol": "trojan",
                 "settings": {"users": [{"name": "u", "password": PASSWORD}]}},
                {"tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
                 "settings": {"method": M.name(), "psk": PSK,
                              "users": [{"name": "v", "password": KEY}]}},
            ],
        }),
        engine::EngineOptions {
            lookup: Some(lookup),
            ..Default::default()
        },
    );
    (h, SlowNames { started, release })
}

/// A plain Trojan connection through `h` to `host:port`, sending `first` with the request.
fn trojan_to(h: &engine::Handle, host: &str, port: u16, first: &[u8]) -> TcpStream {
    let mut wire = vec![0u8; 512];
    let n = proto::trojan::encode_request(
        &proto::trojan::password_hash(PASSWORD),
        proto::trojan::Command::Connect,
        &TargetAddr::Domain(host.into(), port),
        &mut wire,
    );
    wire.truncate(n);
    wire.extend_from_slice(first);
    let mut s = TcpStream::connect(h.local_addr("trojan").unwrap()).unwrap();
    s.write_all(&wire).unwrap();
    s
}

/// Sends one Shadowsocks UDP packet of a new session through `h` to `host:port`, from
/// `sock`; returns the session's client to open the reply with.
fn ss_udp_to(h: &engine::Handle, sock: &UdpSocket, host: &str, port: u16) -> UdpClient {
    let mut client = UdpClient::new(
        M,
        Key::from_password(M, KEY).unwrap(),
        Some(Key::from_password(M, PSK).unwrap()),
        rand::random(),
    );
    let mut buf = vec![0u8; UDP_HEADROOM + 64 + TAG_LEN];
    buf[UDP_HEADROOM..UDP_HEADROOM + 64].fill(7);
    let frame = client.encode(
        &mut buf,
        UDP_HEADROOM..UDP_HEADROOM + 64,
        &TargetAddr::Domain(host.into(), port),
        unix_now(),
        &rand::random(),
    );
    sock.send_to(&buf[frame], h.local_addr("ss").unwrap())
        .unwrap();
    client
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_slow_lookup_holds_up_no_other_name_on_its_worker() {
    // The deadline is longer than the slow lookup: only other resolver threads can answer
    // the second name in time.
    let (h, slow) = engine(60);
    let echo = tcp_echo();
    let _held = trojan_to(&h, "slow.test", echo.port(), b"");
    slow.wait_started("slow.test");

    let mut s = trojan_to(&h, "localhost", echo.port(), b"hi");
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let mut got = [0u8; 2];
    s.read_exact(&mut got)
        .expect("localhost resolved and relayed while slow.test is being looked up");
    assert_eq!(&got, b"hi");

    // UDP sessions on the same worker: one waits for a slow name, the next is relayed (to
    // a name of one address: a session sends to the first, and `localhost` may be ::1 first).
    let udp = udp_echo();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _held_too = ss_udp_to(&h, &sock, "slow.udp.test", udp.port());
    slow.wait_started("slow.udp.test");
    let client = ss_udp_to(&h, &sock, "loopback.test", udp.port());
    sock.set_read_timeout(Some(PROMPT)).unwrap();
    let mut r = vec![0u8; 2048];
    let (n, _) = sock
        .recv_from(&mut r)
        .expect("loopback.test resolved and relayed while slow.udp.test is being looked up");
    let (_, payload) = client.decode(&mut r[..n], unix_now()).expect("an echo");
    assert_eq!(r[payload], [7; 64]);

    slow.release_all();
    h.stop(Duration::from_secs(1));
}

#[test]
fn a_lookup_past_the_deadline_closes_its_connection() {
    let (h, slow) = engine(1);
    let echo = tcp_echo();
    let at = Instant::now();
    let mut s = trojan_to(&h, "slow.test", echo.port(), b"hi");
    // Closed after the one-second deadline, long before the lookup would answer (on a loaded
    // machine the lookup may not even have started by then: it is skipped).
    s.set_read_timeout(Some(SLOW - Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{n} bytes relayed to a name that did not resolve"),
        Err(e) => panic!("still open after {:?}: {e}", at.elapsed()),
    }
    // The engine goes on resolving other names.
    let mut s = trojan_to(&h, "localhost", echo.port(), b"hi");
    s.set_read_timeout(Some(PROMPT)).unwrap();
    let mut got = [0u8; 2];
    s.read_exact(&mut got).expect("localhost relayed");
    assert_eq!(&got, b"hi");

    slow.release_all();
    h.stop(Duration::from_secs(1));
}
