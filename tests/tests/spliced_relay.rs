//! The plain-TCP relay of VLESS and Trojan, which moves a bulk transfer from its buffers to
//! `splice` (socket to pipe to socket, never through user space), carries what the buffered
//! relay carries: half-closes in both directions in either order, the VLESS response header in
//! front of the first bytes back or alone when the destination sends nothing, every byte in
//! order, and exact counters. The engine runs in this process, so the pipes it opened for
//! splicing show in `/proc/self/fd`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use e2e::*;
use serde_json::json;

const UUID: &str = "b831381d-6324-4d53-ad4f-8cda48b30811";
const PASSWORD: &str = "spliced relay password";

/// The request header for `target` on `protocol`'s inbound.
fn header(protocol: &str, target: SocketAddr) -> Vec<u8> {
    let credential = if protocol == "vless" { UUID } else { PASSWORD };
    stream_request_header(protocol, credential, target)
}

fn engine(protocol: &str) -> (engine::Handle, SocketAddr) {
    let users = if protocol == "vless" {
        json!({"users": [{"name": "u", "id": UUID}]})
    } else {
        json!({"users": [{"name": "u", "password": PASSWORD}]})
    };
    engine_with_inbound(protocol, users, false)
}

/// The tests here run one at a time, each stopping its engine before the next starts: a
/// stopping engine closes its workers' pipes, which would upset another test's count.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pipes open in this process.
fn open_pipes() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("pipe:"))
        .count()
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    Pattern::new(seed).fill(0, &mut out);
    out
}

/// A destination that reads everything until the client's half-close, then answers with
/// `answer` and closes. Returns its address and, through the join handle, what it read.
fn read_then_answer(answer: Vec<u8>) -> (SocketAddr, thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(&answer).unwrap();
        got
    });
    (addr, server)
}

/// The client sends its payload (part of it behind the header) and half-closes; the
/// destination sees every byte and end of stream, only then answers, and the client reads the
/// answer and end of stream: each half-close crossed the relay on its own.
fn client_half_closes_first(protocol: &str) {
    let _one = one_at_a_time();
    let pipes_before = open_pipes();
    let (handle, server) = engine(protocol);
    let up = pattern(1, 5 << 20);
    let down = pattern(2, 3 << 20);
    let (dest, destination) = read_then_answer(down.clone());

    let mut c = TcpStream::connect(server).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut first = header(protocol, dest);
    first.extend_from_slice(&up[..1000]);
    c.write_all(&first).unwrap();
    let mut writer = c.try_clone().unwrap();
    let rest = up[1000..].to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&rest).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    sender.join().unwrap();

    assert!(
        destination.join().unwrap() == up,
        "{protocol}: upload corrupted"
    );
    let body = if protocol == "vless" {
        assert_eq!(&back[..2], b"\0\0", "VLESS response header");
        &back[2..]
    } else {
        &back[..]
    };
    assert!(body == down, "{protocol}: download corrupted");
    // Both directions were spliced, and the pipes went back to the workers' pools (no other
    // test here runs meanwhile).
    assert!(
        open_pipes() >= pipes_before + 2,
        "{protocol}: the transfer did not go through splice"
    );
    let want = (up.len() as u64, down.len() as u64);
    assert_eq!(
        settled_traffic(&handle, "u", want),
        want,
        "{protocol} counters"
    );
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

#[test]
fn vless_client_half_closes_first() {
    client_half_closes_first("vless");
}

#[test]
fn trojan_client_half_closes_first() {
    client_half_closes_first("trojan");
}

/// The destination sends its answer and half-closes before the client has finished sending;
/// the client still sends the rest, which the destination reads in full.
#[test]
fn destination_half_closes_first() {
    let _one = one_at_a_time();
    let (handle, server) = engine("vless");
    let up = pattern(3, 4 << 20);
    let down = pattern(4, 2 << 20);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let dest = listener.local_addr().unwrap();
    let answer = down.clone();
    let destination = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(&answer).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });

    let mut c = TcpStream::connect(server).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(&header("vless", dest)).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(&back[..2], b"\0\0");
    assert!(back[2..] == down[..], "download corrupted");
    // The download ended; the upload still goes through.
    c.write_all(&up).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert!(destination.join().unwrap() == up, "upload corrupted");
    let want = (up.len() as u64, down.len() as u64);
    assert_eq!(settled_traffic(&handle, "u", want), want);
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}

/// A destination that closes without a byte: the VLESS client still gets the response header,
/// then end of stream.
#[test]
fn silent_destination_still_gets_the_vless_response_header() {
    let _one = one_at_a_time();
    let (handle, server) = engine("vless");
    let (dest, destination) = read_then_answer(Vec::new());
    let mut c = TcpStream::connect(server).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(&header("vless", dest)).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"\0\0");
    assert!(destination.join().unwrap().is_empty());
    assert_connections_freed(&handle);
    handle.stop(Duration::from_secs(1));
}
