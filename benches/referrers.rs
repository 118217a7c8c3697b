//! Referrers query latency: a signed image of the 20,000-image store (one referrer), and a
//! fan-out of 1, 10, 100 and 1000 referrers on one subject in a small store.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ocistore::{Options, ReferrersQuery, Store};

fn referrers(c: &mut Criterion) {
    let q = ReferrersQuery::default();
    let (root, subject) = common::store_20k();
    let store = Store::open_read_only(&root, &Options::default()).expect("open store-20k");
    let (fan_root, subjects) = common::fanout_store();
    let fan = Store::open_read_only(&fan_root, &Options::default()).expect("open fanout");

    let mut g = c.benchmark_group("referrers");
    // The 1000-referrer query takes 1-2 ms here (more under load): 50 samples in 10 s leave room.
    g.sample_size(50);
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("store20k_1", |b| {
        b.iter(|| {
            let r = store.referrers(black_box(&subject), &q).expect("referrers");
            debug_assert_eq!(r.manifests.len(), 1);
            r
        })
    });
    for (n, subject) in &subjects {
        g.throughput(Throughput::Elements(*n as u64));
        g.bench_with_input(BenchmarkId::new("fanout", n), subject, |b, s| {
            b.iter(|| {
                let r = fan.referrers(black_box(s), &q).expect("referrers");
                debug_assert_eq!(r.manifests.len(), *n);
                r
            })
        });
    }
    g.finish();
}

criterion_group!(benches, referrers);
criterion_main!(benches);
