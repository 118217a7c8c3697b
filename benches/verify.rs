//! Verify throughput: `Store::verify` over the verify store (about 1.1 GiB in 2,080 blobs),
//! against hashing the same files with sha256 alone, one file after another on one thread.
//!
//! The files are read from the page cache (the fixture is read once before timing): the figures
//! compare hashing and bookkeeping, not the disk.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ocistore::verify::VerifyOptions;
use ocistore::{Options, Store};

fn verify(c: &mut Criterion) {
    let (root, bytes) = common::verify_store();
    let store = Store::open_read_only(&root, &Options::default()).expect("open");
    let files: Vec<_> = std::fs::read_dir(root.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .collect();
    let mut g = c.benchmark_group("verify_1GiB");
    g.throughput(Throughput::Bytes(bytes));
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("sha256_one_thread", |b| {
        b.iter(|| {
            for f in &files {
                black_box(common::sha256_file(f));
            }
        })
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            let r = store.verify(&VerifyOptions::default()).expect("verify");
            assert!(r.ok, "{:?}", r.problems);
            r
        })
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
