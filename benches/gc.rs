//! Garbage collection on synthetic layouts (`ocistore::synth`), adopted with `Store::init`.
//!
//! * `gc_strategies`: a collection of a 2,000-image store (18,188 blobs, 30% of the tags
//!   removed: 5,497 blobs of garbage) by each strategy. Each iteration copies the cached template
//!   with `cp -a`, syncs and opens the copy in its untimed setup; only `Store::gc` is timed. The
//!   removed count is checked against the generator's truth.
//! * `gc_noop`: a collection with nothing to collect on the same open store, on the 2k store
//!   (its garbage collected first) and on a 20,000-image store (181,967 blobs, no tag removed,
//!   collected once after adoption): `unchanged` repeats it with no write in between (the store
//!   answers from the record of its last complete collection); `after-write` clears that record
//!   with a pin and an unpin first (untimed), so the collection runs in full.
//! * `refcount_vs_size`: each iteration puts 100 unreferenced blobs in one batch (untimed
//!   setup), then times the collection that removes them, by refcount and by mark-sweep, on the
//!   2k and 20k stores; then 1,000 blobs on the 20k store, by refcount (`20k-garbage-1000`):
//!   does the cost follow the garbage or the store?
//!
//! After each benchmark, the phases of its last collection (`GcReport`'s own timings) are
//! printed to stderr.
//!
//! Templates are built once under `target/bench-data/` (`gc-2k`, `gc-20k`; about a minute and
//! 850 MB the first time) and reused while their marker matches and they open cleanly.
//! `gc_noop` and `refcount_vs_size` run on working copies under `target/bench-data/tmp/`,
//! removed at the end, so the templates are not collected. Each copy of the 2k store takes
//! 1-10 s depending on the machine's load: `gc_strategies` (33 copies) dominates the run time.

mod common;

use std::cell::{Cell, OnceCell, RefCell};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use ocistore::gc::{GcOptions, GcReport, Strategy};
use ocistore::synth::{SynthOptions, synth};
use ocistore::{Digest, Options, PutOptions, Store};
use tempfile::TempDir;

/// Bump when a template's content or preparation changes, so that cached templates are rebuilt.
const GENERATOR: &str = "gc-v2";

/// Blobs of garbage put before each `refcount_vs_size` collection.
const GARBAGE: usize = 100;

const STRATEGIES: [(&str, Strategy); 3] = [
    ("mark-sweep", Strategy::MarkSweep),
    ("refcount", Strategy::Refcount),
    ("scan", Strategy::Scan),
];

fn synth_2k() -> SynthOptions {
    SynthOptions {
        images: 2_000,
        layers: 6,
        shared: 0.5,
        referrers: 1.0,
        untag: 0.3,
        ..SynthOptions::default()
    }
}

fn synth_20k() -> SynthOptions {
    SynthOptions {
        images: 20_000,
        layers: 6,
        shared: 0.5,
        referrers: 1.0,
        untag: 0.0,
        ..SynthOptions::default()
    }
}

/// A cached template: the root of an adopted store and the garbage it holds.
struct Template {
    root: PathBuf,
    garbage: u64,
}

/// Opens `root` writable; fails unless the open did nothing but read the index (no recovery, no
/// reconciliation, no rescan: any of them would also make the next collection walk `blobs/`).
fn open_clean(root: &Path) -> Result<Store, String> {
    let store = Store::open(root, &Options::default()).map_err(|e| e.to_string())?;
    let r = store.open_report();
    if r.recovered
        || r.reconciled.is_some()
        || r.created_index
        || r.indexed_blobs > 0
        || r.finished_unlinks > 0
        || !r.removed_outside.is_empty()
    {
        return Err(format!("open was not clean: {r:?}"));
    }
    Ok(store)
}

fn opens_cleanly(root: &Path) -> Result<(), String> {
    open_clean(root).map(drop)
}

/// The template `name`: the layout `synth(opts)` writes, adopted with `Store::init`, and
/// collected once when `collect` (then it holds no garbage). Built once, reused while its marker
/// (generator version and options) matches and it opens cleanly.
fn template(name: &str, opts: &SynthOptions, collect: bool) -> Template {
    let root = common::data_dir().join(name);
    let marker = common::data_dir().join(format!("{name}.complete"));
    let key = format!("{GENERATOR} {opts:?} collect={collect}");
    if let Ok(text) = fs::read_to_string(&marker)
        && let Some((k, garbage)) = text.trim_end().rsplit_once(" garbage=")
        && k == key
        && let Ok(garbage) = garbage.parse()
    {
        match opens_cleanly(&root) {
            Ok(()) => return Template { root, garbage },
            Err(e) => eprintln!(
                "cached {} is not reusable ({e}): rebuilding",
                root.display()
            ),
        }
    }
    let _ = fs::remove_file(&marker);
    if root.exists() {
        fs::remove_dir_all(&root).expect("remove incomplete template");
    }
    eprintln!("building {} (once; cached afterwards)", root.display());
    let start = Instant::now();
    let synthesized = synth(&root, opts).expect("synth");
    let store = Store::init(&root, &Options::default()).expect("adopt");
    assert_eq!(store.open_report().indexed_blobs, synthesized.blobs);
    let mut garbage = synthesized.garbage_blobs;
    if collect {
        let r = store.gc(&GcOptions::default()).expect("gc");
        assert_eq!(
            r.removed_blobs, garbage,
            "gc disagrees with synth-truth.json"
        );
        garbage = 0;
    }
    drop(store);
    opens_cleanly(&root).expect("template reopens cleanly");
    eprintln!(
        "built {} in {:.1?}: {} blobs, {} garbage",
        root.display(),
        start.elapsed(),
        synthesized.blobs,
        garbage
    );
    fs::write(&marker, format!("{key} garbage={garbage}\n")).expect("write marker");
    Template { root, garbage }
}

/// `cp -a src dst` (`dst` must not exist).
fn copy_tree(src: &Path, dst: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        src.display(),
        dst.display()
    );
}

/// A fresh copy of `t` in a new directory under `target/bench-data/tmp/`, synced: otherwise the
/// first fsync of the timed collection would also write the copy's metadata (one journal).
fn copy_of(t: &Template) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(common::scratch_dir()).expect("tempdir");
    let root = dir.path().join("store");
    copy_tree(&t.root, &root);
    let status = Command::new("sync")
        .arg("-f")
        .arg(&root)
        .status()
        .expect("run sync");
    assert!(status.success(), "sync -f {}", root.display());
    (dir, root)
}

/// A working copy of a template, open. The store closes before its directory goes.
struct Work {
    store: Store,
    _dir: TempDir,
}

/// A working copy of `t`, collected once (so that it holds no garbage), open.
fn work(t: &Template) -> Work {
    let start = Instant::now();
    let (dir, root) = copy_of(t);
    let store = open_clean(&root).expect("open working copy");
    let r = store.gc(&GcOptions::default()).expect("gc");
    assert_eq!(r.removed_blobs, t.garbage);
    eprintln!(
        "working copy of {} ready in {:.1?}",
        t.root.display(),
        start.elapsed()
    );
    Work { store, _dir: dir }
}

/// Puts `n` new unreferenced blobs in one batch. `next` numbers them across calls.
fn put_garbage(store: &Store, next: &Cell<u64>, n: usize) {
    let mut b = store.batch().expect("batch");
    for _ in 0..n {
        let n = next.get();
        next.set(n + 1);
        let bytes = format!("gc bench garbage {n} {}", std::process::id()).into_bytes();
        let opts = PutOptions {
            media_type: None,
            digest: Some(Digest::sha256(&bytes)),
            size: Some(bytes.len() as u64),
        };
        b.put(&mut bytes.as_slice(), &opts).expect("put");
    }
    b.commit().expect("commit");
}

fn gc_benches(c: &mut Criterion) {
    // Built on first use, so that a filter that skips a group skips its fixtures.
    let t2k = OnceCell::new();
    let t20k = OnceCell::new();
    let t2k = || t2k.get_or_init(|| template("gc-2k", &synth_2k(), false));
    let t20k = || t20k.get_or_init(|| template("gc-20k", &synth_20k(), true));
    let w2k: OnceCell<Work> = OnceCell::new();
    let w20k: OnceCell<Work> = OnceCell::new();
    let w2k = || &w2k.get_or_init(|| work(t2k())).store;
    let w20k = || &w20k.get_or_init(|| work(t20k())).store;
    let last: RefCell<Option<GcReport>> = RefCell::new(None);

    // A collection removes ~4,900 of ~18,000 blobs: 0.3-1 s here. The copy and the open of each
    // iteration (~1-2 s, untimed) dominate the wall time.
    let mut g = c.benchmark_group("gc_strategies");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(5));
    for (name, strategy) in STRATEGIES {
        g.bench_function(BenchmarkId::new("2k", name), |b| {
            let t = t2k();
            let opts = GcOptions {
                strategy,
                ..GcOptions::default()
            };
            b.iter_batched(
                || {
                    let (dir, root) = copy_of(t);
                    (open_clean(&root).expect("open copy"), dir)
                },
                |(store, dir)| {
                    let r = store.gc(&opts).expect("gc");
                    assert_eq!(r.removed_blobs, t.garbage, "{name} removed the wrong count");
                    last.replace(Some(r));
                    // Dropped after the timing: the store first, then its directory.
                    (store, dir)
                },
                BatchSize::PerIteration,
            )
        });
        show(&last);
    }
    g.finish();

    // Nothing to collect. `unchanged`: the same collection again with no write in between,
    // which the store answers from the record of its last complete collection. `after-write`: a
    // pin and an unpin of a live blob (untimed) clear that record first, so the collection runs
    // in full and finds nothing.
    let mut g = c.benchmark_group("gc_noop");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(2));
    for size in ["2k", "20k"] {
        for (name, strategy) in &STRATEGIES[..2] {
            let opts = GcOptions {
                strategy: *strategy,
                ..GcOptions::default()
            };
            let id = BenchmarkId::new(format!("{size}/unchanged"), name);
            g.bench_function(id, |b| {
                let store = if size == "2k" { w2k() } else { w20k() };
                b.iter(|| {
                    let r = store.gc(&opts).expect("gc");
                    assert_eq!(r.removed_blobs, 0);
                    last.replace(Some(r));
                })
            });
            show(&last);
            let id = BenchmarkId::new(format!("{size}/after-write"), name);
            g.bench_function(id, |b| {
                let store = if size == "2k" { w2k() } else { w20k() };
                // The empty config `{}`: every synthetic layout holds it, and live referrers
                // list it.
                let live = Digest::sha256(b"{}");
                b.iter_batched(
                    || {
                        assert!(store.pin(&live).expect("pin"));
                        assert!(store.unpin(&live).expect("unpin"));
                    },
                    |()| {
                        let r = store.gc(&opts).expect("gc");
                        assert_eq!(r.removed_blobs, 0);
                        assert!(!r.unchanged, "the write did not clear the record");
                        last.replace(Some(r));
                    },
                    BatchSize::PerIteration,
                )
            });
            show(&last);
        }
    }
    g.finish();

    let next = Cell::new(0u64);
    let mut g = c.benchmark_group("refcount_vs_size");
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    // Each store with GARBAGE blobs of garbage, by both strategies; then the large store with
    // ten times the garbage, by refcount: its cost should follow the garbage.
    let cases = STRATEGIES[..2]
        .iter()
        .flat_map(|s| [("2k", GARBAGE, s), ("20k", GARBAGE, s)])
        .chain([("20k", 10 * GARBAGE, &STRATEGIES[1])]);
    for (size, garbage, (name, strategy)) in cases {
        let opts = GcOptions {
            strategy: *strategy,
            ..GcOptions::default()
        };
        let group = if garbage == GARBAGE {
            size.to_string()
        } else {
            format!("{size}-garbage-{garbage}")
        };
        g.bench_function(BenchmarkId::new(group, name), |b| {
            let store = if size == "2k" { w2k() } else { w20k() };
            b.iter_batched(
                || put_garbage(store, &next, garbage),
                |()| {
                    let r = store.gc(&opts).expect("gc");
                    assert_eq!(r.removed_blobs, garbage as u64);
                    last.replace(Some(r));
                },
                BatchSize::PerIteration,
            )
        });
        show(&last);
    }
    g.finish();
}

/// Prints the phases of the last collection a benchmark ran (its report's own timings).
fn show(last: &RefCell<Option<GcReport>>) {
    if let Some(r) = last.take() {
        eprintln!(
            "  last run: removed {}, kept {}{}: mark {:.1} ms, max pause {:.1} ms, unlink {:.1} ms, total {:.1} ms",
            r.removed_blobs,
            r.kept_blobs,
            if r.unchanged { " (unchanged)" } else { "" },
            r.mark_ms,
            r.max_pause_ms,
            r.unlink_ms,
            r.total_ms
        );
    }
}

criterion_group!(benches, gc_benches);
criterion_main!(benches);
