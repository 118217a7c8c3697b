//! Ingest throughput:
//!
//! - `ingest_64MiB`, `ingest_1GiB`: `Store::put` of a 64 MiB and a 1 GiB pseudo-random file into
//!   a fresh store, with and without the expected digest, against hashing the same file with
//!   sha256 alone. The file is read from the page cache: the figure is hashing plus writing plus
//!   fsync, not the read.
//! - `ingest_manifests`: small image manifests (about 600 bytes, a config and two layers each)
//!   into a store that already holds their configs and layers: 1,000 put and tagged in one
//!   batch, and 100 with one `Store::put` each (one commit per manifest). Throughput is in
//!   manifests per second.
//!
//! Every iteration writes to a new store in a new directory under `target/bench-data/tmp/`
//! (created and filled in the untimed setup). The directories of the blob ingests are removed
//! after each timing; those of the manifest ingests at the end of their group: on ext4 without a
//! journal, creating a file scans past the inodes deleted in the last minutes, so removing
//! thousands of files between iterations would slow the next iteration's creates several-fold.

mod common;

use std::fs::File;
use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use ocistore::{Options, PutOptions, Store};
use tempfile::TempDir;

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

/// A new store under the scratch directory, holding `blobs` (committed in one batch).
fn store_holding(blobs: &[common::Blob]) -> (TempDir, Store) {
    let dir = tempfile::tempdir_in(common::scratch_dir()).expect("tempdir");
    let store = Store::init(dir.path(), &Options::default()).expect("init");
    let mut b = store.batch().expect("batch");
    for blob in blobs {
        blob.put(&mut b);
    }
    b.commit().expect("commit");
    (dir, store)
}

/// Manifests of `n` small images, their tags, and the configs and layers they reference.
struct Manifests {
    children: Vec<common::Blob>,
    /// (options with media type, digest and size; bytes; tag), computed before any timing.
    manifests: Vec<(PutOptions, Vec<u8>, String)>,
}

impl Manifests {
    fn new(set: &str, n: usize) -> Manifests {
        let mut children = Vec::with_capacity(3 * n);
        let mut manifests = Vec::with_capacity(n);
        for i in 0..n {
            let (config, layers, manifest) = common::small_image(set, i);
            children.push(config);
            children.extend(layers);
            manifests.push((manifest.opts(), manifest.bytes, format!("{set}-{i:05}")));
        }
        Manifests {
            children,
            manifests,
        }
    }
}

fn ingest_manifests(c: &mut Criterion) {
    const BATCHED: usize = 1_000;
    const ONE_BY_ONE: usize = 100;
    let batched = Manifests::new("batch", BATCHED);
    let single = Manifests::new("single", ONE_BY_ONE);
    let mut g = c.benchmark_group("ingest_manifests");
    // Each iteration's setup writes a few thousand small blobs (seconds here): flat sampling with
    // 10 samples and a short measurement time keep the run to about ten iterations per bench.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    // The stores' directories, removed when the group is done (see the module comment).
    let mut kept: Vec<TempDir> = Vec::new();

    g.throughput(Throughput::Elements(BATCHED as u64));
    g.bench_function(BenchmarkId::new("batch_put_tag", BATCHED), |b| {
        b.iter_batched(
            || store_holding(&batched.children),
            |(dir, store)| {
                let mut batch = store.batch().expect("batch");
                for (opts, bytes, tag) in &batched.manifests {
                    let put = batch.put(&mut bytes.as_slice(), opts).expect("put");
                    batch.tag(put.digest.as_str(), tag).expect("tag");
                }
                batch.commit().expect("commit");
                kept.push(dir);
                // Closed after the timing.
                store
            },
            BatchSize::PerIteration,
        )
    });

    g.throughput(Throughput::Elements(ONE_BY_ONE as u64));
    g.bench_function(BenchmarkId::new("put_one_by_one", ONE_BY_ONE), |b| {
        b.iter_batched(
            || store_holding(&single.children),
            |(dir, store)| {
                for (opts, bytes, _) in &single.manifests {
                    store.put(&mut bytes.as_slice(), opts).expect("put");
                }
                kept.push(dir);
                store
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    drop(kept);
}

criterion_group!(benches, ingest, ingest_manifests);
criterion_main!(benches);
