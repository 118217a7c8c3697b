//! Ingest throughput: `Store::put` of a 64 MiB and a 1 GiB pseudo-random file into a fresh store,
//! with and without the expected digest, against hashing the same file with sha256 alone.
//!
//! Every put goes to a new store in a new directory under `target/bench-data/tmp/` (created in
//! the untimed setup, removed after the timing). The file is read from the page cache: the figure
//! is hashing plus writing plus fsync, not the read.

mod common;

use std::fs::File;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ocistore::{Options, PutOptions, Store};

fn ingest(c: &mut Criterion) {
    // (group, file, size, measurement time of sha256_only, of each put). Flat sampling with 10
    // samples runs at least 10 iterations: at ~0.6 s (sha256) and ~1.2-2 s (put) per GiB here,
    // these times give about 10 iterations of each on the 1 GiB file (criterion may warn that it
    // needs longer; it then just runs the 10).
    let cases = [
        ("ingest_64MiB", "blob-64MiB.bin", 64u64 << 20, 3, 4),
        ("ingest_1GiB", "blob-1GiB.bin", 1u64 << 30, 5, 12),
    ];
    for (group, name, size, sha_secs, put_secs) in cases {
        let (path, digest) = common::random_file(name, size);
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Bytes(size));
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        g.warm_up_time(Duration::from_secs(1));

        g.measurement_time(Duration::from_secs(sha_secs));
        g.bench_function("sha256_only", |b| {
            b.iter(|| common::sha256_file(black_box(&path)))
        });
        let with = PutOptions {
            digest: Some(digest.clone()),
            size: Some(size),
            ..PutOptions::default()
        };
        let without = PutOptions::default();
        g.measurement_time(Duration::from_secs(put_secs));
        for (bench, opts) in [("put_with_digest", &with), ("put_without_digest", &without)] {
            g.bench_function(bench, |b| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir_in(common::scratch_dir()).expect("tempdir");
                        let store = Store::init(dir.path(), &Options::default()).expect("init");
                        let file = File::open(&path).expect("open input");
                        (dir, store, file)
                    },
                    |(dir, store, mut file)| {
                        let put = store.put(&mut file, opts).expect("put");
                        assert_eq!(put.digest, digest);
                        // Dropped after the timing: the store first, then its directory.
                        (store, dir)
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        g.finish();
    }
}

criterion_group!(benches, ingest);
criterion_main!(benches);
