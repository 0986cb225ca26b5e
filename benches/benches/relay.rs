//! The engine's whole relay path in process, over loopback: the engine (one worker) serves a
//! Shadowsocks inbound, the harness's client speaks to it with the `proto` codecs, and the
//! harness's target sinks, sources and checks the bytes. Per method (AES-256-GCM and
//! 2022-blake3-aes-256-gcm): 16 MiB uploaded, 16 MiB downloaded (bytes/s, every byte
//! checked), and one whole connection (accept, handshake, connect to the target, a 32-byte
//! echo, teardown: ns per connection).
//!
//! `cargo bench -p benches --bench relay`. The side-by-side harness (docs/benchmarks.md) is
//! where server CPU is measured against other servers; this suite times the engine's path by
//! itself, wall clock, client and target included.

use std::time::Duration;

use benches::client::Endpoint;
use benches::target::BenchTarget;
use benches::workload;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proto::shadowsocks::{Key, Method};

const BYTES: u64 = 16 << 20;

fn password(method: Method) -> String {
    use base64::Engine as _;
    if method.is_2022() {
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    } else {
        "relay-bench-password".into()
    }
}

/// An engine with one Shadowsocks inbound for `method`, allowed to reach the loopback target.
fn engine(method: Method) -> (engine::Handle, Endpoint, BenchTarget) {
    let target = BenchTarget::start().expect("target starts");
    let password = password(method);
    let config = serde_json::json!({
        "workers": 1,
        "outbound": {"allow_loopback": true},
        "inbounds": [{
            "tag": "ss", "listen": "127.0.0.1:0", "protocol": "shadowsocks",
            "settings": {"method": method.name(), "users": [{"name": "bench", "password": password}]},
        }],
    });
    let config = engine::Config::from_json(&config.to_string()).expect("valid config");
    let handle = engine::Engine::start(config).expect("engine starts");
    let endpoint = Endpoint::Shadowsocks {
        server: handle.local_addr("ss").expect("the inbound listens"),
        method,
        key: Key::from_password(method, &password).expect("valid key"),
        target: target.addr(),
    };
    (handle, endpoint, target)
}

fn relay(c: &mut Criterion) {
    for method in [Method::Aes256Gcm, Method::Blake3Aes256Gcm] {
        let (handle, endpoint, _target) = engine(method);
        let mut g = c.benchmark_group(format!("relay/{method}"));
        g.throughput(Throughput::Bytes(BYTES));
        g.bench_function(BenchmarkId::new("upload", "16 MiB"), |b| {
            b.iter(|| workload::upload(&endpoint, BYTES).expect("upload checked"))
        });
        g.bench_function(BenchmarkId::new("download", "16 MiB"), |b| {
            b.iter(|| workload::download(&endpoint, BYTES).expect("download checked"))
        });
        g.throughput(Throughput::Elements(1));
        g.bench_function("connection", |b| {
            b.iter(|| workload::connection_churn(&endpoint, 1).expect("echo checked"))
        });
        g.finish();
        handle.stop(Duration::from_secs(1));
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    targets = relay
}
criterion_main!(benches);
