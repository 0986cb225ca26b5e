//! The control plane on VLESS, Trojan and VMess inbounds: users added through the handle can
//! connect at once, removing a user closes their open connection, a changed credential stops
//! the old one; and the TLS server-name allow-list.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use e2e::*;
use engine::{Limits, UserInbound, UserSpec};
use proto::vless::Command as VlessCommand;
use proto::TargetAddr;
use serde_json::json;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const OTHER: &str = "0c4d7b3a-7b44-4c43-8d0b-4a1e3a2e9f10";

fn engine() -> engine::Handle {
    let inbound = |tag: &str, protocol: &str| {
        json!({"tag": tag, "listen": "127.0.0.1:0", "network": ["tcp"],
               "protocol": protocol, "settings": {}})
    };
    start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "timeouts": {"handshake_secs": 2},
        "inbounds": [inbound("vless", "vless"), inbound("trojan", "trojan")],
    }))
}

fn spec(credentials: &[(&str, &str)]) -> UserSpec {
    UserSpec {
        name: "u".into(),
        inbounds: credentials
            .iter()
            .map(|(tag, password)| UserInbound {
                tag: tag.to_string(),
                password: password.to_string(),
            })
            .collect(),
        limits: Limits::default(),
    }
}

/// A VLESS (`id`) or Trojan (`password`) request for the echo, with "ping" after it.
fn request(tag: &str, credential: &str, echo: SocketAddr) -> Vec<u8> {
    let mut wire = stream_request_header(tag, credential, echo);
    wire.extend_from_slice(b"ping");
    wire
}

/// Opens a connection to the echo through inbound `tag` and checks the echo.
fn open(h: &engine::Handle, tag: &str, credential: &str, echo: SocketAddr) -> TcpStream {
    let wire = request(tag, credential, echo);
    let mut s = TcpStream::connect(h.local_addr(tag).unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&wire).unwrap();
    let want: &[u8] = if tag == "vless" { b"\0\0ping" } else { b"ping" };
    let mut got = vec![0u8; want.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, want, "{tag} echo");
    s
}

fn assert_closed(mut s: TcpStream) {
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn users_added_removed_and_rekeyed_live() {
    let h = engine();
    let echo = tcp_echo();
    h.upsert_users(vec![spec(&[("vless", UUID), ("trojan", "pw-1")])])
        .unwrap();
    let v = open(&h, "vless", UUID, echo);
    let t = open(&h, "trojan", "pw-1", echo);
    // Removal closes both at once.
    assert_eq!(h.remove_users(&["u".into()]).unwrap(), 1);
    assert_closed(v);
    assert_closed(t);
    // Re-added with new credentials: the new ones work, the old are refused.
    h.upsert_users(vec![spec(&[("vless", OTHER), ("trojan", "pw-2")])])
        .unwrap();
    let v = open(&h, "vless", OTHER, echo);
    let t = open(&h, "trojan", "pw-2", echo);
    for (tag, old) in [("vless", UUID), ("trojan", "pw-1")] {
        let wire = request(tag, old, echo);
        assert_silent_until(h.local_addr(tag).unwrap(), &wire, Duration::from_secs(2));
    }
    // Taken off one inbound: only that connection closes.
    h.upsert_users(vec![spec(&[("trojan", "pw-2")])]).unwrap();
    assert_closed(v);
    let mut t = t;
    t.write_all(b"more").unwrap();
    let mut got = [0u8; 4];
    t.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"more");
    // Credentials are checked per protocol.
    let bad = h.upsert_users(vec![spec(&[("vless", "")])]);
    assert!(bad.is_err(), "an empty VLESS id is refused");
    h.stop(Duration::from_secs(1));
}

#[test]
fn tls_server_names_are_checked() {
    let handle = start_engine(json!({
        "workers": 1,
        "inbounds": [{"tag": "t", "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": "trojan",
            "settings": {"users": []},
            "tls": {"self_signed": ["allowed.test"], "server_names": ["allowed.test"]}}],
    }));
    let port = handle.local_addr("t").unwrap().port();
    let handshake = |name: &str| {
        Command::new(peer("curl"))
            .args([
                "-sk",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{ssl_verify_result}",
            ])
            .args(["--resolve", &format!("{name}:{port}:127.0.0.1")])
            .arg(format!("https://{name}:{port}/"))
            .output()
            .expect("curl runs")
    };
    // curl's exit code 35 is a failed TLS handshake; with the allowed name the handshake
    // succeeds and the request then finds no site (no fallback: the connection is drained).
    assert_eq!(handshake("other.test").status.code(), Some(35));
    assert_ne!(handshake("allowed.test").status.code(), Some(35));
    handle.stop(Duration::from_secs(1));
}

/// A VMess request (aes-128-gcm, chunk stream with masking) for `target`, with a "ping" chunk.
fn vmess_ping(id: &str, target: SocketAddr) -> Vec<u8> {
    let command = VlessCommand::Tcp(TargetAddr::Ip(target));
    let (mut out, mut sealer, _) = vmess_request(
        id,
        &command,
        proto::vmess::option::CHUNK_STREAM | proto::vmess::option::CHUNK_MASKING,
    );
    let head = sealer.prefix_len();
    let mut chunk = vec![0u8; head + 4 + proto::vmess::SEAL_TAILROOM];
    chunk[head..head + 4].copy_from_slice(b"ping");
    let frame = sealer.seal(&mut chunk, head..head + 4);
    out.extend_from_slice(&chunk[frame]);
    out
}

#[test]
fn removal_closes_every_stream_protocol_within_a_second() {
    let inbound = |tag: &str| json!({"tag": tag, "listen": "127.0.0.1:0", "network": ["tcp"], "protocol": tag, "settings": {}});
    let h = start_engine(json!({
        "workers": 2,
        "outbound": {"allow_loopback": true},
        "inbounds": [inbound("vless"), inbound("trojan"), inbound("vmess")],
    }));
    let echo = tcp_echo();
    h.upsert_users(vec![spec(&[
        ("vless", UUID),
        ("trojan", "pw"),
        ("vmess", UUID),
    ])])
    .unwrap();
    let mut conns = vec![
        open(&h, "vless", UUID, echo),
        open(&h, "trojan", "pw", echo),
    ];
    let mut vmess = TcpStream::connect(h.local_addr("vmess").unwrap()).unwrap();
    vmess
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    vmess.write_all(&vmess_ping(UUID, echo)).unwrap();
    let mut first = [0u8; 1];
    vmess.read_exact(&mut first).expect("VMess response");
    conns.push(vmess);
    let started = std::time::Instant::now();
    assert_eq!(h.remove_users(&["u".into()]).unwrap(), 1);
    for (mut c, protocol) in conns.into_iter().zip(["vless", "trojan", "vmess"]) {
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                // Response bytes already in flight before the removal.
                Ok(_) => continue,
                Err(e) => panic!("{protocol}: not closed within a second: {e}"),
            }
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        started.elapsed()
    );
    h.stop(Duration::from_secs(1));
}

/// Sockets of every connection the engine holds (accepted and outbound) are close-on-exec, so a
/// child process the embedding program starts cannot keep a client's connection open after the
/// engine closes it (a kicked user's connection would otherwise outlive the kick).
#[test]
fn connection_sockets_are_not_inherited_by_child_processes() {
    let h = engine();
    let echo = tcp_echo();
    h.upsert_users(vec![spec(&[("vless", UUID), ("trojan", "pw")])])
        .unwrap();
    // Connections queued before the engine gets to them are taken by glommio's direct
    // `accept(2)`, the path that used to leave the flag off.
    let addr = h.local_addr("vless").unwrap();
    let wire = request("vless", UUID, echo);
    let mut conns: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(&wire).unwrap();
            s
        })
        .collect();
    for s in &mut conns {
        let mut got = [0u8; 6];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"\0\0ping");
    }
    conns.push(open(&h, "trojan", "pw", echo));
    let mut sockets = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let fd = entry.file_name().to_string_lossy().into_owned();
        // The other tests of this binary run in parallel and close sockets of their own: one
        // may be gone between the listing and this read.
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        assert_ne!(
            flags & 0o2000000,
            0,
            "socket fd {fd} ({target:?}) is not close-on-exec"
        );
        sockets += 1;
    }
    // Ours, the echo's, and the engine's two per connection.
    assert!(sockets >= 4 * conns.len(), "only {sockets} sockets seen");
    h.stop(Duration::from_secs(1));
}
