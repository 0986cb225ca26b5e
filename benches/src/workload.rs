//! The scenarios the harness runs against each server, and the cipher's own cost.
//!
//! Every scenario checks what it moved and fails (rather than report a figure) when a transfer
//! is short, long or corrupted, or an echo differs from what was sent.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use proto::shadowsocks::replay::SaltFilter;
use proto::shadowsocks::tcp::{ClientRequest, Handshake, Opened, ServerHandshake};
use proto::shadowsocks::{Key, Method, UserKeys, TAG_LEN};
use proto::TargetAddr;

use crate::client::{Conn, Endpoint, SEND_BATCH};
use crate::pattern::TestPattern;
use crate::probe::{thread_cpu, ProcessProbe};
use crate::target::{Command, UploadReport, COMMAND_LEN, REPORT_LEN};
use crate::unix_now;

/// How long to let a server finish its work (closing connections) before reading its CPU.
const SETTLE: Duration = Duration::from_millis(150);

/// Server CPU and wall time around one scenario.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Wall time of the scenario (without the settling pause).
    pub wall: Duration,
    /// Server CPU time, exact.
    pub cpu: Duration,
    /// Server CPU time in clock ticks (`/proc/PID/stat`).
    pub ticks: u64,
}

/// Runs `scenario` and measures the server's CPU around it.
pub fn measure(probe: &ProcessProbe, scenario: impl FnOnce() -> Result<()>) -> Result<Measured> {
    thread::sleep(SETTLE);
    let before = probe.cpu()?;
    let started = Instant::now();
    scenario()?;
    let wall = started.elapsed();
    thread::sleep(SETTLE);
    let (cpu, ticks) = probe.cpu()?.since(&before);
    Ok(Measured { wall, cpu, ticks })
}

/// One stream: sends `bytes` pattern bytes to the target and checks its report.
pub fn upload(endpoint: &Endpoint, bytes: u64) -> Result<()> {
    let mut conn = endpoint
        .connect(&Command::Upload(bytes).encode())
        .context("connect")?;
    let pattern = TestPattern::get();
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(SEND_BATCH as u64) as usize;
        let mut at = sent;
        conn.send(n, &mut |piece: &mut [u8]| {
            pattern.fill(at, piece);
            at += piece.len() as u64;
        })
        .with_context(|| format!("upload stopped after {sent} of {bytes} bytes"))?;
        sent += n as u64;
    }
    let mut report = [0u8; REPORT_LEN];
    conn.recv_exact(&mut report)
        .context("no report from the target")?;
    let report = UploadReport::decode(&report);
    ensure!(
        report.received == bytes,
        "incomplete upload: the target received {} of {bytes} bytes",
        report.received
    );
    ensure!(
        report.intact,
        "corrupted upload: the target saw wrong bytes"
    );
    Ok(())
}

/// One stream: receives `bytes` pattern bytes from the target and checks each one.
pub fn download(endpoint: &Endpoint, bytes: u64) -> Result<()> {
    let mut conn = endpoint
        .connect(&Command::Download(bytes).encode())
        .context("connect")?;
    let pattern = TestPattern::get();
    let mut got = 0u64;
    let mut intact = true;
    while got < bytes {
        let n = conn
            .recv(&mut |data: &[u8]| intact &= pattern.matches(got, data))
            .with_context(|| format!("download stopped after {got} of {bytes} bytes"))?;
        if n == 0 {
            bail!("incomplete download: the stream ended after {got} of {bytes} bytes");
        }
        got += n as u64;
    }
    ensure!(
        got == bytes,
        "download too long: {got} bytes, {bytes} expected"
    );
    ensure!(intact, "corrupted download: wrong bytes received");
    Ok(())
}

/// `streams` concurrent streams moving `total` bytes between them, alternately uploads and
/// downloads (so both directions of the server are busy at once).
pub fn parallel(endpoint: &Endpoint, streams: usize, total: u64) -> Result<()> {
    let each = total / streams as u64;
    thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|i| {
                s.spawn(move || {
                    if i % 2 == 0 {
                        upload(endpoint, each)
                    } else {
                        download(endpoint, each)
                    }
                    .with_context(|| format!("stream {i}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("stream thread panicked"))
    })
}

/// Payload of the single echo every new connection carries.
const HELLO: [u8; 32] = *b"marzneshin side-by-side benchmk!";

fn hello_request() -> [u8; COMMAND_LEN + HELLO.len()] {
    let mut initial = [0u8; COMMAND_LEN + HELLO.len()];
    initial[..COMMAND_LEN].copy_from_slice(&Command::Echo.encode());
    initial[COMMAND_LEN..].copy_from_slice(&HELLO);
    initial
}

/// Opens a connection whose request carries a small message, and checks the echo.
fn hello(endpoint: &Endpoint) -> Result<Conn> {
    let mut conn = endpoint.connect(&hello_request()).context("connect")?;
    let mut back = [0u8; HELLO.len()];
    conn.recv_exact(&mut back).context("echo")?;
    ensure!(back == HELLO, "echo differs from what was sent");
    Ok(conn)
}

/// `n` connections one after another: open, handshake with a 32-byte message, read its echo,
/// close.
pub fn connection_churn(endpoint: &Endpoint, n: usize) -> Result<()> {
    for i in 0..n {
        drop(hello(endpoint).with_context(|| format!("connection {i}"))?);
    }
    Ok(())
}

/// Round-trip times of `n` echoes of `size` bytes on one connection (after a warm-up).
pub fn round_trips(endpoint: &Endpoint, n: usize, size: usize) -> Result<Vec<Duration>> {
    let mut conn = hello(endpoint)?;
    let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut back = vec![0u8; size];
    let mut times = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let started = Instant::now();
        conn.send_all(&msg)?;
        conn.recv_exact(&mut back)?;
        let t = started.elapsed();
        ensure!(back == msg, "echo {i} differs from what was sent");
        if i >= n / 10 {
            times.push(t);
        }
    }
    Ok(times)
}

/// Opens `n` connections, each with one echo checked, and keeps them open.
pub fn idle_connections(endpoint: &Endpoint, n: usize) -> Result<Vec<Conn>> {
    (0..n)
        .map(|i| hello(endpoint).with_context(|| format!("idle connection {i}")))
        .collect()
}

/// The `q`-quantile (0..=1) of `times`, nearest rank.
pub fn quantile(times: &mut [Duration], q: f64) -> Duration {
    times.sort_unstable();
    let rank = ((q * times.len() as f64).ceil() as usize).clamp(1, times.len());
    times[rank - 1]
}

/// CPU time of sealing then opening `bytes` in `chunk`-byte chunks in place, in this thread,
/// with the same codecs and buffer layout the engine uses (one AEAD pass each way).
pub fn cipher_cost(method: Method, password: &str, bytes: u64, chunk: usize) -> Result<Duration> {
    let keys = UserKeys::new(method, None, [(0, password)])
        .map_err(|(_, e)| anyhow::anyhow!("key for {method}: {e}"))?;
    let key = Key::from_password(method, password)?;
    let target = TargetAddr::Ip(([127, 0, 0, 1], 9).into());
    let salt = [0x42u8; 32];
    let request = ClientRequest {
        method,
        key: &key,
        identity: None,
        salt: &salt[..method.salt_len()],
        target: &target,
        padding: 0,
    };
    let now = unix_now();
    let mut wire = vec![0u8; 1024];
    let (n, mut sealer, _) = request.encode(b"x", now, &mut wire);
    let mut opener = match ServerHandshake::new().advance(
        &keys,
        &mut wire[..n],
        now,
        None,
        &mut SaltFilter::new(60, 16),
    )? {
        Handshake::Done(req) => req.opener,
        Handshake::NeedMore => bail!("handshake incomplete"),
    };
    let prefix = sealer.prefix_len();
    let mut buf = vec![0u8; prefix + chunk + TAG_LEN];
    TestPattern::get().fill(0, &mut buf[prefix..prefix + chunk]);
    let rounds = bytes.div_ceil(chunk as u64);
    let started = thread_cpu();
    for _ in 0..rounds {
        let frame = sealer.seal(&mut buf, prefix..prefix + chunk, now);
        match opener.open(&mut buf[frame], now)? {
            Opened::Chunk { payload, .. } if payload.len() == chunk => {}
            other => bail!("cipher round trip gave {other:?}"),
        }
    }
    let cpu = thread_cpu() - started;
    ensure!(
        TestPattern::get().matches(0, &buf[prefix..prefix + chunk]),
        "cipher round trip changed the bytes"
    );
    // Scale to exactly `bytes` when the chunk does not divide it.
    Ok(cpu.mul_f64(bytes as f64 / (rounds * chunk as u64) as f64))
}

/// CPU time of sealing then opening `bytes` in `chunk`-byte chunks in place with `algorithm`,
/// in this thread: the AEAD's own cost under a protocol that frames it (VMess's body chunks,
/// TLS records), without the framing.
pub fn aead_cost(
    algorithm: &'static ring::aead::Algorithm,
    bytes: u64,
    chunk: usize,
) -> Result<Duration> {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
    let key_bytes = vec![0x42u8; algorithm.key_len()];
    let key = LessSafeKey::new(
        UnboundKey::new(algorithm, &key_bytes).map_err(|_| anyhow::anyhow!("AEAD key"))?,
    );
    let nonce = |i: u64| {
        let mut n = [0u8; NONCE_LEN];
        n[NONCE_LEN - 8..].copy_from_slice(&i.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let mut buf = vec![0u8; chunk + algorithm.tag_len()];
    TestPattern::get().fill(0, &mut buf[..chunk]);
    let rounds = bytes.div_ceil(chunk as u64);
    let started = thread_cpu();
    for i in 0..rounds {
        let (data, tag_room) = buf.split_at_mut(chunk);
        let tag = key
            .seal_in_place_separate_tag(nonce(i), Aad::empty(), data)
            .map_err(|_| anyhow::anyhow!("seal"))?;
        tag_room.copy_from_slice(tag.as_ref());
        let opened = key
            .open_in_place(nonce(i), Aad::empty(), &mut buf)
            .map_err(|_| anyhow::anyhow!("AEAD round trip {i} did not authenticate"))?;
        ensure!(opened.len() == chunk, "AEAD round trip changed the length");
    }
    let cpu = thread_cpu() - started;
    ensure!(
        TestPattern::get().matches(0, &buf[..chunk]),
        "AEAD round trip changed the bytes"
    );
    Ok(cpu.mul_f64(bytes as f64 / (rounds * chunk as u64) as f64))
}
