//! Open time of a store with 20,000 tagged images (2,000 of them signed).
//!
//! `open` / `open_read_only` time the open alone (the store is dropped outside the timing);
//! `open_close` / `open_read_only_close` time open plus drop, what one CLI invocation pays.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ocistore::{Options, Store};

fn open(c: &mut Criterion) {
    let (root, _) = common::store_20k();
    let opts = Options::default();
    let mut g = c.benchmark_group("open_20k");
    // A writable open + close takes 1-2 ms here (more under load): 50 samples in 10 s leave room.
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("open", |b| {
        // One store at a time: a writable store holds the writer lock until dropped.
        b.iter_batched(
            || (),
            |()| Store::open(black_box(&root), &opts).expect("open"),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("open_close", |b| {
        b.iter(|| drop(Store::open(black_box(&root), &opts).expect("open")))
    });
    g.bench_function("open_read_only", |b| {
        b.iter_batched(
            || (),
            |()| Store::open_read_only(black_box(&root), &opts).expect("open"),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("open_read_only_close", |b| {
        b.iter(|| drop(Store::open_read_only(black_box(&root), &opts).expect("open")))
    });
    g.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
