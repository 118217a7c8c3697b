//! Open time of a store with 20,000 tagged images (2,000 of them signed), and against store size.
//!
//! `open_20k`: `open` / `open_read_only` time the open alone (the store is dropped outside the
//! timing); `open_close` / `open_read_only_close` time open plus drop, what one CLI invocation
//! pays. `open_vs_size`: open plus drop, writable and read-only, of stores of 1,000, 5,000 and
//! 20,000 images built alike (the parameter is the number of images).

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use ocistore::{Options, Store};

fn open_close(root: &Path, opts: &Options) {
    drop(Store::open(black_box(root), opts).expect("open"));
}

fn open_read_only_close(root: &Path, opts: &Options) {
    drop(Store::open_read_only(black_box(root), opts).expect("open"));
}

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
    g.bench_function("open_close", |b| b.iter(|| open_close(&root, &opts)));
    g.bench_function("open_read_only", |b| {
        b.iter_batched(
            || (),
            |()| Store::open_read_only(black_box(&root), &opts).expect("open"),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("open_read_only_close", |b| {
        b.iter(|| open_read_only_close(&root, &opts))
    });
    g.finish();
}

fn open_vs_size(c: &mut Criterion) {
    let opts = Options::default();
    let stores: Vec<_> = common::STORE_SIZES
        .iter()
        .map(|&n| (n, common::store_of(n).0))
        .collect();
    let mut g = c.benchmark_group("open_vs_size");
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(5));
    for (n, root) in &stores {
        g.bench_with_input(BenchmarkId::new("open_close", n), root, |b, root| {
            b.iter(|| open_close(root, &opts))
        });
        g.bench_with_input(
            BenchmarkId::new("open_read_only_close", n),
            root,
            |b, root| b.iter(|| open_read_only_close(root, &opts)),
        );
    }
    g.finish();
}

criterion_group!(benches, open, open_vs_size);
criterion_main!(benches);
