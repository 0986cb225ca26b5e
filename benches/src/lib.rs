//! Benchmarks of the Marzneshin engine.
//!
//! Three kinds live in this crate (see `docs/benchmarks.md` for how to run and read them):
//!
//! - criterion suites under `benches/`: the Shadowsocks codecs per method (chunk seal and open,
//!   handshakes with many users, UDP packets) and the per-core buffer pool, in process;
//! - the side-by-side harness (`src/bin/side_by_side.rs`): our engine, the peer Shadowsocks
//!   servers (shadowsocks-rust, shadowsocks-libev, sing-box, v2ray) and a plain relay
//!   (`src/bin/plain_relay.rs`, the floor), and the peer VLESS, VMess, Trojan and Hysteria2
//!   servers (sing-box, v2ray, shoes, trojan-gfw: those that serve each protocol), reached
//!   through one sing-box client per protocol, each pinned to CPU 0,
//!   driven by one load generator pinned to CPU 1, reporting server CPU per GiB, per connection,
//!   round trips and memory as ratios against the peers;
//! - the panel load benchmark (`src/bin/panel_load.rs`): the real `marzneshin serve` on SQLite
//!   and PostgreSQL with 10 000 users created through its API, timing the API and
//!   subscription requests admins and clients make most, and the panel's peak memory.
//!
//! The library holds what the harness is made of, so each piece can be read on its own:
//!
//! - [`pattern`]: the verifiable byte stream every transfer carries;
//! - [`target`]: the loopback sink, source and echo the servers relay to;
//! - [`client`]: the load generator's connections, plain or Shadowsocks through our own
//!   client-side codecs (no third-party client in the measured path), or SOCKS5 to the
//!   sing-box client in front of a VLESS, VMess, Trojan or Hysteria2 server;
//! - [`probe`]: reading another process's CPU time and memory, and pinning;
//! - [`workload`]: the scenarios (upload, download, parallel streams, connection churn, round
//!   trips, idle connections) and the in-process cipher cost;
//! - [`report`]: the JSON and Markdown results;
//! - [`plot`]: the same results as an SVG chart.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod pattern;
pub mod plot;
pub mod probe;
pub mod report;
pub mod target;
pub mod workload;

/// Seconds since the Unix epoch (the codecs take time as an input).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
