//! The per-core buffer pool: taking and returning a relay buffer, against allocating one.
//!
//! `cargo bench -p benches --bench buffer_pool`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use engine::buffer::BufferPool;

/// The engine's relay buffer size (a whole 2022 chunk plus read-ahead).
const RELAY_BUFFER: usize = 128 * 1024;

fn pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("buffer_pool");
    let pool = BufferPool::new(RELAY_BUFFER, 1024);
    drop(pool.get());
    group.bench_function("get_drop", |b| {
        b.iter(|| {
            let mut buf = pool.get();
            buf[0] = 1;
            black_box(&buf);
        })
    });
    group.bench_function("get_drop_two", |b| {
        b.iter(|| {
            let up = pool.get();
            let down = pool.get();
            black_box((&up, &down));
        })
    });
    // What the pool saves: a fresh zeroed buffer per use.
    group.bench_function("alloc_zeroed_baseline", |b| {
        b.iter(|| {
            let mut buf = vec![0u8; RELAY_BUFFER].into_boxed_slice();
            buf[0] = 1;
            black_box(&buf);
        })
    });
    group.finish();
}

criterion_group! {
    name = buffers;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(20);
    targets = pool
}
criterion_main!(buffers);
