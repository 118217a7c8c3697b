//! Fault injection: every file-system step of ingest, tag, untag, delete, gc and the index.json
//! rewrite is made to fail, one at a time, with `EIO` (that step only) and with `ENOSPC` (that
//! step and every later write, as a full disk does). Each time, the operation either completes
//! or leaves the store as it was, with a clear one-line error; the store reopens, verifies, and
//! holds no temporary files.
//!
//! The steps are those [`ocistore::fault`] sees: creating, writing, fsyncing and renaming files,
//! fsyncing directories, unlinking, and the index's own writes and syncs. Opening and closing
//! the store are inside the faulted region too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocistore::fault::{self, Step};
use ocistore::gc::{DeleteOptions, GcOptions, Strategy};
use ocistore::verify::VerifyOptions;
use ocistore::{Digest, Entry, Error, Options, PutOptions, Store};
use serde_json::json;

mod common;
use common::{copy_dir, sha256_digest};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn put(store: &Store, bytes: &[u8]) -> ocistore::Result<(Digest, u64)> {
    let p = store.put(&mut &bytes[..], &PutOptions::default())?;
    Ok((p.digest, p.size))
}

fn image_doc(config: &(Digest, u64), layer: &(Digest, u64)) -> Vec<u8> {
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0.as_str(), "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0.as_str(), "size": layer.1}]}))
    .unwrap()
}

/// A tagged image with a signature; returns the manifest.
fn image(store: &Store, name: &str) -> Digest {
    let layer = put(store, format!("layer {name}").repeat(5000).as_bytes()).unwrap();
    let config = put(store, format!(r#"{{"name":"{name}"}}"#).as_bytes()).unwrap();
    let m = put(store, &image_doc(&config, &layer)).unwrap();
    store.tag(m.0.as_str(), name).unwrap();
    let sig = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.0.as_str(), "size": config.1},
        "layers": [],
        "subject": {"mediaType": MANIFEST, "digest": m.0.as_str(), "size": m.1}}))
    .unwrap();
    put(store, &sig).unwrap();
    m.0
}

/// The store every scenario starts from: images `a` and `b` with signatures, and the garbage
/// left by untagging image `old`.
fn baseline(dir: &Path) {
    let store = Store::init(dir, &Options::default()).unwrap();
    image(&store, "a");
    image(&store, "b");
    image(&store, "old");
    store.untag("old").unwrap();
}

/// What a scenario's outcome is judged by: each tag's digest, and which blobs are present.
#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    tags: BTreeMap<String, String>,
    blobs: BTreeSet<String>,
}

fn state(store: &Store, tracked: &BTreeSet<Digest>) -> State {
    let tags = store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|e| e.tag.map(|t| (t, e.digest.to_string())))
        .collect();
    let blobs = tracked
        .iter()
        .filter(|d| store.blob_info(d).unwrap().is_some())
        .map(Digest::to_string)
        .collect();
    State { tags, blobs }
}

/// Every digest the store knows of (its files), to track presence.
fn files(root: &Path) -> BTreeSet<Digest> {
    let dir = root.join("blobs").join("sha256");
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            Digest::parse(&format!(
                "sha256:{}",
                e.unwrap().file_name().to_string_lossy()
            ))
            .unwrap()
        })
        .collect()
}

/// Temporary files anywhere in the store: ingest files and index.json replacements.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(root.join(".ocistore").join("ingest"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for e in fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        if e.file_name()
            .to_string_lossy()
            .starts_with(".ocistore-tmp-")
        {
            out.push(e.path());
        }
    }
    out
}

type Op = fn(&Store) -> ocistore::Result<()>;

fn ingest(store: &Store) -> ocistore::Result<()> {
    let mut b = store.batch()?;
    let layer = b.put(
        &mut &b"new layer".repeat(40_000)[..],
        &PutOptions::default(),
    )?;
    let config = b.put(&mut &br#"{"name":"c"}"#[..], &PutOptions::default())?;
    let doc = image_doc(&(config.digest, config.size), &(layer.digest, layer.size));
    let m = b.put(&mut &doc[..], &PutOptions::default())?;
    b.tag(m.digest.as_str(), "c")?;
    b.commit()
}

fn tag(store: &Store) -> ocistore::Result<()> {
    store.tag("a", "a2").map(drop)
}

fn untag(store: &Store) -> ocistore::Result<()> {
    store.untag("b").map(drop)
}

fn delete(store: &Store) -> ocistore::Result<()> {
    let d = store.resolve("a")?;
    store
        .delete(d.as_str(), &DeleteOptions::default())
        .map(drop)
}

fn gc(store: &Store) -> ocistore::Result<()> {
    store
        .gc(&GcOptions {
            grace: Duration::ZERO,
            chunk: 2,
            ..GcOptions::default()
        })
        .map(drop)
}

/// An untagged index.json entry: only index.json and the index change.
fn add_entry(store: &Store) -> ocistore::Result<()> {
    let d = store.resolve("b")?;
    let size = store.blob_info(&d)?.map_or(0, |r| r.size);
    let mut b = store.batch()?;
    b.add_entry(&Entry::new(&d, MANIFEST, size, None))?;
    b.commit()
}

/// Opens the store at `dir`, runs `op`, and closes the store; the first error, if any.
fn run(dir: &Path, op: Op) -> ocistore::Result<()> {
    let store = Store::open(dir, &Options::default())?;
    op(&store)
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// The step fails with EIO; later steps succeed.
    Eio,
    /// The step and every later create, write and sync fail with ENOSPC.
    DiskFull,
}

struct Outcome {
    steps: usize,
    failed_ops: usize,
}

/// Runs `op` against a copy of `base` once per step and fault, and checks each outcome.
fn exercise(name: &str, op: Op, base: &Path) -> Outcome {
    // A run with nothing failing: the steps, and the state after.
    let scratch = tempfile::tempdir().unwrap();
    let clean = scratch.path().join("clean");
    copy_dir(base, &clean);
    let recorded: Arc<Mutex<Vec<(Step, PathBuf)>>> = Arc::default();
    {
        let rec = Arc::clone(&recorded);
        let _f = fault::install(
            clean.clone(),
            Arc::new(move |step, path| {
                rec.lock().unwrap().push((step, path.to_owned()));
                None
            }),
        );
        run(&clean, op).unwrap_or_else(|e| panic!("{name} without faults: {e}"));
    }
    let steps = recorded.lock().unwrap().len();
    assert!(steps > 0, "{name}: no step went through the failpoints");
    let mut tracked = files(base);
    tracked.extend(files(&clean));
    // Both outcomes, each also after a collection (which the judgement below runs too).
    let judge = |dir: &Path| {
        let copy = scratch.path().join("judged");
        copy_dir(dir, &copy);
        let s = Store::open(&copy, &Options::default()).unwrap();
        let now = state(&s, &tracked);
        gc(&s).unwrap();
        let collected = state(&s, &tracked);
        drop(s);
        fs::remove_dir_all(&copy).unwrap();
        (now, collected)
    };
    let (before, before_gc) = judge(base);
    let (after, after_gc) = judge(&clean);
    let live: BTreeSet<String> = before_gc
        .blobs
        .intersection(&after_gc.blobs)
        .cloned()
        .collect();

    let mut failed_ops = 0;
    for i in 0..steps {
        for kind in [Fault::Eio, Fault::DiskFull] {
            let dir = scratch.path().join(format!("{i}-{kind:?}"));
            copy_dir(base, &dir);
            let seen = Arc::new(AtomicUsize::new(0));
            let result = {
                let seen = Arc::clone(&seen);
                let _f = fault::install(
                    dir.clone(),
                    Arc::new(move |step, _| {
                        let n = seen.fetch_add(1, Ordering::SeqCst);
                        let fail = match kind {
                            Fault::Eio => n == i,
                            Fault::DiskFull => {
                                n >= i && !matches!(step, Step::Unlink | Step::Rename)
                            }
                        };
                        fail.then(|| match kind {
                            Fault::Eio => io::Error::from_raw_os_error(libc::EIO),
                            Fault::DiskFull => io::Error::from_raw_os_error(libc::ENOSPC),
                        })
                    }),
                );
                run(&dir, op)
            };
            let ctx = format!("{name}: {kind:?} at step {i} of {steps}");
            if let Err(e) = &result {
                failed_ops += 1;
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{ctx}: error is not one line: {msg}");
                assert!(
                    msg.contains("os error"),
                    "{ctx}: error does not say why: {msg}"
                );
            }
            // Reopen with nothing failing: recovery finishes or undoes what was cut short.
            let store = Store::open(&dir, &Options::default())
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            let now = state(&store, &tracked);
            let r = store.verify(&VerifyOptions::default()).unwrap();
            assert!(r.ok, "{ctx}: verify after reopen: {:?}", r.problems);
            assert!(
                now.tags == before.tags || now.tags == after.tags,
                "{ctx}: tags neither as before nor complete: {:?}",
                now.tags
            );
            assert!(now.blobs.is_superset(&live), "{ctx}: live content lost");
            // What a cut-short operation may leave beyond its outcome is garbage: content it
            // had published but not committed, or garbage a collection had not yet removed.
            gc(&store).unwrap();
            let collected = state(&store, &tracked);
            assert!(
                collected == before_gc || collected == after_gc,
                "{ctx}: after a collection, neither as before nor complete:\n now {collected:?}\n before {before_gc:?}\n after {after_gc:?}"
            );
            assert!(
                result.is_err() || collected == after_gc,
                "{ctx}: Ok but not complete"
            );
            drop(store);
            assert_eq!(temp_files(&dir), Vec::<PathBuf>::new(), "{ctx}");
            fs::remove_dir_all(&dir).unwrap();
        }
    }
    println!(
        "{name}: {steps} steps, {} runs, {failed_ops} failed",
        steps * 2
    );
    Outcome { steps, failed_ops }
}

#[test]
fn every_step_of_every_operation_fails_cleanly() {
    let base_dir = tempfile::tempdir().unwrap();
    let base = base_dir.path().join("store");
    baseline(&base);
    let scenarios: [(&str, Op); 6] = [
        ("ingest", ingest),
        ("tag", tag),
        ("untag", untag),
        ("delete", delete),
        ("index.json entry", add_entry),
        ("gc", gc),
    ];
    // Failpoints are per store directory, so the scenarios run side by side.
    let base = base.as_path();
    let outcomes: Vec<(&str, Outcome)> = std::thread::scope(|s| {
        let running: Vec<_> = scenarios
            .into_iter()
            .map(|(name, op)| (name, s.spawn(move || exercise(name, op, base))))
            .collect();
        running
            .into_iter()
            .map(|(name, h)| (name, h.join().expect("scenario thread")))
            .collect()
    });
    let mut total = 0;
    for (name, o) in outcomes {
        assert!(o.failed_ops > 0, "{name}: no injected fault made it fail");
        total += o.steps * 2;
    }
    println!("{total} faulted runs, nothing lost");
}

/// A large batch makes its files durable with one file-system sync instead of an fsync each;
/// when that fails, nothing is published and nothing indexed.
#[test]
fn a_large_batch_whose_sync_fails_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    baseline(&root);
    let tracked = files(&root);
    let store = Store::open(&root, &Options::default()).unwrap();
    let before = state(&store, &tracked);
    let _f = fault::install(
        root.clone(),
        Arc::new(|step, _| (step == Step::Fsync).then(|| io::Error::from_raw_os_error(libc::EIO))),
    );
    let mut b = store.batch().unwrap();
    for i in 0..200 {
        b.put(&mut format!("blob {i}").as_bytes(), &PutOptions::default())
            .unwrap();
    }
    let err = b.commit().unwrap_err().to_string();
    assert!(err.contains("os error 5"), "{err}");
    assert!(!err.contains('\n'));
    drop(_f);
    assert_eq!(files(&root), tracked, "nothing was published");
    assert_eq!(state(&store, &tracked), before);
    assert!(temp_files(&root).is_empty());
}

/// An unlink that still fails when the store reopens does not keep it from opening: the open
/// warns, naming the error, the record stays, and a later open finishes the unlinks.
#[test]
fn an_unlink_that_still_fails_on_open_is_a_warning_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    baseline(&root);
    let store = Store::open(&root, &Options::default()).unwrap();
    put(&store, b"unreferenced, undeletable for a while").unwrap();
    let before = files(&root);
    let failing = || -> fault::Injector {
        Arc::new(|step, _| {
            (step == Step::Unlink).then(|| io::Error::from_raw_os_error(libc::EACCES))
        })
    };
    {
        let _f = fault::install(root.clone(), failing());
        let err = gc(&store).unwrap_err().to_string();
        assert!(err.contains("os error 13"), "{err}");
    }
    // The files whose removal committed but whose unlink failed.
    let stuck: BTreeSet<Digest> = files(&root)
        .into_iter()
        .filter(|d| store.blob_info(d).unwrap().is_none())
        .collect();
    assert!(!stuck.is_empty(), "no unlink was left to finish");
    drop(store);
    {
        let _f = fault::install(root.clone(), failing());
        let store = Store::open(&root, &Options::default()).unwrap();
        let report = store.open_report();
        assert_eq!(report.finished_unlinks, 0);
        let expected = format!("could not finish the unlinks of {} blobs", stuck.len());
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains(&expected) && w.contains("os error 13")),
            "{:?}",
            report.warnings
        );
        // The store works meanwhile, and no file went.
        let (other, _) = put(&store, b"pushed while an unlink is stuck").unwrap();
        assert!(store.blob_info(&other).unwrap().is_some());
        let now = files(&root);
        assert!(before.iter().all(|d| now.contains(d)), "a file went");
    }
    let store = Store::open(&root, &Options::default()).unwrap();
    assert_eq!(store.open_report().finished_unlinks, stuck.len() as u64);
    assert!(store.open_report().warnings.is_empty());
    let left = files(&root);
    assert!(stuck.iter().all(|d| !left.contains(d)), "a file was left");
    assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
}

/// A store whose collection, in chunks of `chunk`, failed at its third unlink, after removals
/// had committed.
struct CutShort {
    store: Store,
    /// The unreferenced blobs pushed.
    garbage: BTreeSet<Digest>,
    /// What the collection was to keep.
    live: BTreeSet<Digest>,
    /// What it removed from the index.
    removed: BTreeSet<Digest>,
    /// The files whose unlink failed.
    failed: BTreeSet<Digest>,
}

/// The bytes of the unreferenced blob `cut_short` pushed with digest `d`.
fn unreferenced(d: &Digest) -> Vec<u8> {
    (0..9)
        .map(|i| format!("unreferenced {i}").into_bytes())
        .find(|b| sha256_digest(b) == d.as_str())
        .expect("one of the unreferenced blobs")
}

fn cut_short(root: &Path, chunk: usize) -> CutShort {
    baseline(root);
    let store = Store::open(root, &Options::default()).unwrap();
    let mut garbage = BTreeSet::new();
    for i in 0..9 {
        let (d, _) = put(&store, format!("unreferenced {i}").as_bytes()).unwrap();
        garbage.insert(d);
    }
    let dry = store
        .gc(&GcOptions {
            grace: Duration::ZERO,
            dry_run: true,
            ..GcOptions::default()
        })
        .unwrap();
    let doomed: BTreeSet<&str> = dry.removed.iter().map(|r| r.digest.as_str()).collect();
    assert!(garbage.iter().all(|d| doomed.contains(d.as_str())));
    let live: BTreeSet<Digest> = files(root)
        .into_iter()
        .filter(|d| !doomed.contains(d.as_str()))
        .collect();
    let tracked = files(root);
    // The third unlink and every one after it fail.
    let unlinks = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(BTreeSet::new()));
    let err = {
        let (unlinks, failed) = (Arc::clone(&unlinks), Arc::clone(&failed));
        let _f = fault::install(
            root.to_path_buf(),
            Arc::new(move |step, path| {
                let fail = step == Step::Unlink && unlinks.fetch_add(1, Ordering::SeqCst) >= 2;
                if fail {
                    let name = path.file_name().unwrap().to_string_lossy();
                    let d = Digest::parse(&format!("sha256:{name}")).unwrap();
                    failed.lock().unwrap().insert(d);
                }
                fail.then(|| io::Error::from_raw_os_error(libc::EIO))
            }),
        );
        store
            .gc(&GcOptions {
                grace: Duration::ZERO,
                chunk,
                ..GcOptions::default()
            })
            .unwrap_err()
            .to_string()
    };
    let failed = std::mem::take(&mut *failed.lock().unwrap());
    assert!(!failed.is_empty());
    assert!(err.contains("os error 5") && !err.contains('\n'), "{err}");
    let removed: BTreeSet<Digest> = tracked
        .iter()
        .filter(|d| store.blob_info(d).unwrap().is_none())
        .cloned()
        .collect();
    assert!(removed.len() >= 2, "removed {removed:?}");
    assert!(
        removed.iter().all(|d| !live.contains(d)),
        "live content removed"
    );
    let left = files(root);
    assert!(
        removed.iter().any(|d| left.contains(d)),
        "no unlink was left to finish"
    );
    CutShort {
        store,
        garbage,
        live,
        removed,
        failed,
    }
}

/// Unlinks that fail after their removals committed stay in the intent record, one batch per
/// committed transaction, and the next open finishes every one of them: the files go, nothing
/// live does, and the record is empty afterwards.
#[test]
fn unlinks_cut_short_are_finished_on_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let cut = cut_short(&root, 2);
    drop(cut.store);

    let store = Store::open(&root, &Options::default()).unwrap();
    assert_eq!(
        store.open_report().finished_unlinks,
        cut.removed.len() as u64
    );
    let now = files(&root);
    assert!(
        cut.removed.iter().all(|d| !now.contains(d)),
        "a file was left"
    );
    assert!(
        cut.live.iter().all(|d| now.contains(d)),
        "live content lost"
    );
    assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
    drop(store);
    reopen_emptied_and_collect(&root, &cut.garbage, &cut.live, None);
}

/// The next open counts the unlinks it did, not the digests the record lists: a blob pushed
/// again since its removal was committed is indexed, and its file stays.
#[test]
fn an_open_does_not_count_a_blob_pushed_again_as_unlinked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let cut = cut_short(&root, 2);
    let again = cut
        .garbage
        .iter()
        .find(|d| cut.removed.contains(*d))
        .expect("an unreferenced blob was removed")
        .clone();
    assert_eq!(put(&cut.store, &unreferenced(&again)).unwrap().0, again);
    drop(cut.store);

    let store = Store::open(&root, &Options::default()).unwrap();
    assert!(store.open_report().warnings.is_empty());
    assert_eq!(
        store.open_report().finished_unlinks,
        cut.removed.len() as u64 - 1
    );
    let now = files(&root);
    assert!(now.contains(&again), "the blob pushed again was unlinked");
    assert!(store.blob_info(&again).unwrap().is_some());
    assert!(
        cut.removed.iter().all(|d| *d == again || !now.contains(d)),
        "a file was left"
    );
    assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
}

/// A process that goes on after a collection whose unlinks failed does not wait for the next
/// open: its next collection unlinks the files left (but not one pushed again since) before it
/// marks, and empties the intent record. While those unlinks still fail, a collection warns and
/// keeps the record.
#[test]
fn unlinks_cut_short_are_finished_by_the_next_collection() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let CutShort {
        store,
        garbage,
        live,
        removed,
        failed,
    } = cut_short(&root, 64);
    let left: BTreeSet<Digest> = files(&root)
        .into_iter()
        .filter(|d| removed.contains(d))
        .collect();
    assert!(failed.iter().all(|d| left.contains(d)));
    // One of the files left that no unlink tried is pushed again: its push wins over the
    // pending unlink. The ones whose unlink failed are unlinked with the rest. (In chunks of 64,
    // the garbage goes in one or two batches, each unlinked in order by one thread, which stops
    // at its first failure.)
    let again = left
        .iter()
        .find(|d| garbage.contains(*d) && !failed.contains(*d))
        .expect("an unlink of an unreferenced blob left untried")
        .clone();
    let (pushed, _) = put(&store, &unreferenced(&again)).unwrap();
    assert_eq!(pushed, again);
    assert!(store.pin(&again).unwrap());
    let collect = || {
        store
            .gc(&GcOptions {
                grace: Duration::ZERO,
                ..GcOptions::default()
            })
            .unwrap()
    };

    // While one file left cannot be removed (the last in key order, the order the unlinks take),
    // the collection runs and warns, and the record keeps it. The files before it go, among
    // them those whose unlink failed before; the report counts those and the warning the rest.
    let leftover = |now: &BTreeSet<Digest>| -> Vec<Digest> {
        removed
            .iter()
            .filter(|d| **d != again && now.contains(*d))
            .cloned()
            .collect()
    };
    let before = leftover(&files(&root));
    assert!(before.len() >= 2, "{before:?}");
    let last = before.last().unwrap().clone();
    let report = {
        let stuck = last.encoded().to_owned();
        let _f = fault::install(
            root.clone(),
            Arc::new(move |step, path| {
                let name = path.file_name().unwrap().to_string_lossy();
                (step == Step::Unlink && name == stuck.as_str())
                    .then(|| io::Error::from_raw_os_error(libc::EIO))
            }),
        );
        collect()
    };
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("os error 5") && !report.warnings[0].contains('\n'),
        "{:?}",
        report.warnings
    );
    let now = files(&root);
    assert_eq!(leftover(&now), std::slice::from_ref(&last));
    assert_eq!(report.finished_unlinks, before.len() as u64 - 1);
    assert!(
        report.warnings[0].contains("the unlinks of 1 blobs"),
        "{:?}",
        report.warnings
    );

    let still: Vec<&Digest> = removed
        .iter()
        .filter(|d| **d != again && now.contains(*d))
        .collect();
    let report = collect();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.finished_unlinks, still.len() as u64);
    let now = files(&root);
    assert!(
        removed.iter().all(|d| *d == again || !now.contains(d)),
        "a file was left"
    );
    assert!(now.contains(&again), "the blob pushed again was unlinked");
    assert!(store.blob_info(&again).unwrap().is_some());
    assert!(live.iter().all(|d| now.contains(d)), "live content lost");
    assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
    drop(store);
    reopen_emptied_and_collect(&root, &garbage, &live, Some(&again));
}

/// Reopens the store at `root` (which finds no unlink to finish: the record is empty), unpins
/// `pinned`, collects, and checks that `garbage` went and `live` stayed.
fn reopen_emptied_and_collect(
    root: &Path,
    garbage: &BTreeSet<Digest>,
    live: &BTreeSet<Digest>,
    pinned: Option<&Digest>,
) {
    let store = Store::open(root, &Options::default()).unwrap();
    assert_eq!(
        store.open_report().finished_unlinks,
        0,
        "the record was not emptied"
    );
    if let Some(p) = pinned {
        assert!(store.unpin(p).unwrap());
    }
    gc(&store).unwrap();
    let after = files(root);
    assert!(garbage.iter().all(|d| !after.contains(d)));
    assert!(live.iter().all(|d| after.contains(d)));
}

/// Pushes an image whose digests depend on `variant` (so its garbage falls in a different key
/// order each time): its layer, config and manifest.
fn image_of_variant(store: &Store, variant: usize) -> [(Digest, u64); 3] {
    let layer = put(store, format!("layer {variant}").as_bytes()).unwrap();
    let config = put(store, format!(r#"{{"v":{variant}}}"#).as_bytes()).unwrap();
    let manifest = put(store, &image_doc(&config, &layer)).unwrap();
    [layer, config, manifest]
}

/// A collection with no grace, one digest per chunk; with `fail`, every commit of the index
/// fails once the first chunk has committed.
fn gc_in_chunks_of_one(
    store: &Store,
    root: &Path,
    fail: bool,
) -> ocistore::Result<ocistore::gc::GcReport> {
    let failing = Arc::new(AtomicUsize::new(0));
    let flag = Arc::clone(&failing);
    let _f = fault::install(
        root.to_path_buf(),
        Arc::new(move |step, _| {
            (step == Step::IndexSync && flag.load(Ordering::SeqCst) > 0)
                .then(|| io::Error::from_raw_os_error(libc::EIO))
        }),
    );
    store.set_sweep_hook(Some(Arc::new(move |_| {
        if fail {
            failing.fetch_add(1, Ordering::SeqCst);
        }
    })));
    let result = store.gc(&GcOptions {
        grace: Duration::ZERO,
        chunk: 1,
        ..GcOptions::default()
    });
    store.set_sweep_hook(None);
    result
}

/// A sweep leaves the parent rows of a removed manifest under a child that stays (here a layer
/// two images share) for a later transaction to drop. Whether that transaction runs in the same
/// collection or, after a commit failed, on the next open, the layer's count ends exact: once
/// its last image goes, the reference-count collection, which reads the counts, removes it.
#[test]
fn stale_parent_rows_are_dropped_by_the_sweep_or_on_the_next_open() {
    for fail in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::init(&root, &Options::default()).unwrap();
        let shared = put(&store, "shared layer".repeat(100).as_bytes()).unwrap();
        for name in ["x", "y"] {
            let config = put(&store, format!(r#"{{"name":"{name}"}}"#).as_bytes()).unwrap();
            let m = put(&store, &image_doc(&config, &shared)).unwrap();
            store.tag(m.0.as_str(), name).unwrap();
        }
        store.untag("x").unwrap();
        // Once the first chunk (x's manifest) has committed, every commit of the index fails.
        let result = gc_in_chunks_of_one(&store, &root, fail);
        assert_eq!(result.is_err(), fail, "{:?}", result.map(|r| r.removed));
        drop(store);

        let store = Store::open(&root, &Options::default()).unwrap();
        assert!(
            store.blob_info(&shared.0).unwrap().is_some(),
            "y's layer lost"
        );
        assert!(store.resolve("x").is_err());
        store.untag("y").unwrap();
        let report = store
            .gc(&GcOptions {
                grace: Duration::ZERO,
                strategy: Strategy::Refcount,
                ..GcOptions::default()
            })
            .unwrap();
        assert!(
            report.removed.iter().any(|r| r.digest == shared.0.as_str()),
            "the shared layer was kept (fail = {fail}): its count was left high"
        );
        assert!(store.blob_info(&shared.0).unwrap().is_none());
        assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
    }
}

/// The sweep skips the count updates of garbage it removes later in the same collection (a
/// child or a referrer of a digest it removes): those counts go with their digests. When the
/// collection stops in between, the intent record has them recounted on the next open (or at
/// the start of the next collection, in the same process), so that the reference-count
/// collection, which reads the counts, finds the same garbage as the others: here a signature
/// whose subject the interrupted collection removed, and what it lists.
#[test]
fn after_an_interrupted_collection_every_strategy_finds_the_same_garbage() {
    let mut subject_first = 0;
    for (variant, reopen) in (0..40).flat_map(|v| [(v, true), (v, false)]) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::init(&root, &Options::default()).unwrap();
        let [_, _, m] = image_of_variant(&store, variant);
        store.tag(m.0.as_str(), "img").unwrap();
        let payload = put(&store, format!("signature payload {variant}").as_bytes()).unwrap();
        let sig = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256_digest(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/octet-stream",
                "digest": payload.0.as_str(), "size": payload.1}],
            "subject": {"mediaType": MANIFEST, "digest": m.0.as_str(), "size": m.1}}))
        .unwrap();
        put(&store, b"{}").unwrap();
        let sig = put(&store, &sig).unwrap();
        store.untag("img").unwrap();
        if !reopen {
            // Every unlink fails: the collection stops after its first chunk, and the same
            // process goes on; its next collection settles the counts first.
            assert!(
                gc_with_unlinks_failing(&store, &root).is_err(),
                "variant {variant}"
            );
            collect_with_refcount(&store, &sig.0, variant);
            continue;
        }
        // Once the first chunk (the garbage's first digest) has committed, every commit fails.
        assert!(gc_in_chunks_of_one(&store, &root, true).is_err());
        drop(store);
        let store = Store::open(&root, &Options::default()).unwrap();
        if store.blob_info(&m.0).unwrap().is_none() {
            subject_first += 1;
        }
        // Within the grace period: the signature is not dangling, its subject was collected.
        let marked = garbage_found(&store, Strategy::MarkSweep);
        let sig_left = store.blob_info(&sig.0).unwrap().is_some();
        assert_eq!(
            marked.contains(sig.0.as_str()),
            sig_left,
            "variant {variant}"
        );
        for strategy in [Strategy::Refcount, Strategy::Scan] {
            assert_eq!(
                garbage_found(&store, strategy),
                marked,
                "variant {variant}, {strategy:?}"
            );
        }
        collect_with_refcount(&store, &sig.0, variant);
    }
    // The case that needs the recount: the subject went first, before its signature.
    assert!(subject_first > 0);
}

/// The transactions that remove the garbage's tags skip the count updates of the digests they
/// name, which the sweep removes later with their counts (here a signature linked to its image
/// by a cosign tag, whose support that tag gave). When the collection stops before the sweep
/// removes them, the intent record has them counted afresh on the next open (or at the start of
/// the next collection, in the same process): the store verifies clean, and every strategy finds
/// the same garbage.
#[test]
fn counts_the_removal_of_garbage_tags_skipped_are_settled_after_an_interrupted_collection() {
    let mut sig_left = 0;
    for (variant, reopen) in (0..12).flat_map(|v| [(v, true), (v, false)]) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::init(&root, &Options::default()).unwrap();
        let [_, _, m] = image_of_variant(&store, variant);
        store.tag(m.0.as_str(), "img").unwrap();
        let payload = put(&store, format!("cosign payload {variant}").as_bytes()).unwrap();
        put(&store, b"{}").unwrap();
        let sig = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                "digest": sha256_digest(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/octet-stream",
                "digest": payload.0.as_str(), "size": payload.1}]}))
        .unwrap();
        let sig = put(&store, &sig).unwrap();
        let cosign = format!("sha256-{}.sig", m.0.encoded());
        store.tag(sig.0.as_str(), &cosign).unwrap();
        store.untag("img").unwrap();
        // Every unlink fails: the collection stops once its first chunk (one digest) has
        // committed, after the transaction that removed the cosign tag.
        assert!(
            gc_with_unlinks_failing(&store, &root).is_err(),
            "variant {variant}"
        );
        assert!(store.resolve(&cosign).is_err(), "variant {variant}");
        if store.blob_info(&sig.0).unwrap().is_some() {
            sig_left += 1;
        }
        if !reopen {
            // The same process goes on: its next collection settles the counts first.
            collect_with_refcount(&store, &sig.0, variant);
            continue;
        }
        drop(store);
        let store = Store::open(&root, &Options::default()).unwrap();
        let marked = garbage_found(&store, Strategy::MarkSweep);
        for strategy in [Strategy::Refcount, Strategy::Scan] {
            assert_eq!(
                garbage_found(&store, strategy),
                marked,
                "variant {variant}, {strategy:?}"
            );
        }
        let verified = store.verify(&VerifyOptions::default()).unwrap();
        assert!(verified.ok, "variant {variant}: {:?}", verified.problems);
        collect_with_refcount(&store, &sig.0, variant);
    }
    // The case that needs the settling: the signature outlived the interrupted collection.
    assert!(sig_left > 0);
}

/// A collection with no grace, one digest per chunk, every unlink failing: it stops once its
/// first chunk has committed, and the process goes on.
fn gc_with_unlinks_failing(store: &Store, root: &Path) -> ocistore::Result<ocistore::gc::GcReport> {
    let _f = fault::install(
        root.to_path_buf(),
        Arc::new(|step, _| {
            (step == Step::Unlink).then(|| io::Error::from_raw_os_error(libc::EACCES))
        }),
    );
    store.gc(&GcOptions {
        grace: Duration::ZERO,
        chunk: 1,
        ..GcOptions::default()
    })
}

/// What a dry run of `strategy` (default grace) would remove.
fn garbage_found(store: &Store, strategy: Strategy) -> BTreeSet<String> {
    let report = store
        .gc(&GcOptions {
            strategy,
            dry_run: true,
            ..GcOptions::default()
        })
        .unwrap();
    report.removed.into_iter().map(|r| r.digest).collect()
}

/// A reference-count collection (default grace) removes the signature `sig`, and the store
/// verifies clean after it.
fn collect_with_refcount(store: &Store, sig: &Digest, variant: usize) {
    store
        .gc(&GcOptions {
            strategy: Strategy::Refcount,
            ..GcOptions::default()
        })
        .unwrap();
    assert!(store.blob_info(sig).unwrap().is_none(), "variant {variant}");
    let verified = store.verify(&VerifyOptions::default()).unwrap();
    assert!(verified.ok, "variant {variant}: {:?}", verified.problems);
}

/// The sweep removes garbage in key order, so a garbage manifest may lose a child before it goes
/// itself. If the collection then fails, the store still refuses to make that manifest reachable,
/// after a reopen too, until a collection completes (and removes it) or the child is pushed
/// again.
#[test]
fn a_failed_collection_still_refuses_to_revive_what_it_left_incomplete() {
    for variant in 0..100 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::init(&root, &Options::default()).unwrap();
        let [layer, config, m] = image_of_variant(&store, variant);
        let first = config.0.clone().min(layer.0.clone());
        if m.0 < first {
            continue;
        }
        let first_bytes = store.read_all(&first).unwrap();
        // Once the first chunk (the first child) has committed, every commit of the index fails.
        let result = gc_in_chunks_of_one(&store, &root, true);
        assert!(result.is_err());
        drop(store);

        let store = Store::open(&root, &Options::default()).unwrap();
        assert!(
            store.blob_info(&first).unwrap().is_none(),
            "no chunk committed"
        );
        assert!(store.blob_info(&m.0).unwrap().is_some());
        match store.tag(m.0.as_str(), "revived") {
            Err(Error::BeingCollected { digest, gone }) => {
                assert_eq!(digest, m.0.as_str());
                assert_eq!(gone, first.as_str());
            }
            other => panic!("tag: {other:?}"),
        }
        assert!(matches!(store.pin(&m.0), Err(Error::BeingCollected { .. })));
        assert!(store.resolve("revived").is_err());
        // The incomplete manifest is garbage, not damage.
        assert!(store.verify(&VerifyOptions::default()).unwrap().ok);

        // Pushed again, the child makes the manifest whole: it can be tagged.
        assert!(!put(&store, &first_bytes).unwrap().0.to_string().is_empty());
        store.tag(m.0.as_str(), "revived").unwrap();
        // The child pushed again counts the manifest that lists it, so the reference-count
        // collection, which reads the counts, keeps it too.
        for strategy in [Strategy::Refcount, Strategy::MarkSweep, Strategy::Scan] {
            let report = store
                .gc(&GcOptions {
                    strategy,
                    grace: Duration::ZERO,
                    ..GcOptions::default()
                })
                .unwrap();
            let removed: Vec<&str> = report.removed.iter().map(|r| r.digest.as_str()).collect();
            assert!(removed.is_empty(), "{strategy:?} removed {removed:?}");
        }
        for d in [&m.0, &config.0, &layer.0] {
            assert!(store.blob_info(d).unwrap().is_some(), "{d} lost");
        }
        // A complete collection lifts the refusal: the image, untagged, goes; pushed again, it
        // can be tagged at once.
        store.untag("revived").unwrap();
        store.gc(&GcOptions::default()).unwrap();
        assert!(store.blob_info(&m.0).unwrap().is_none());
        let [_, _, m2] = image_of_variant(&store, variant);
        assert_eq!(m2.0, m.0);
        store.tag(m2.0.as_str(), "again").unwrap();
        assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
        return;
    }
    panic!("no variant put a child first");
}

/// In key order a subject may go before its referrer. If the collection then fails, the
/// referrer is not kept for the grace period as dangling (it was garbage with its subject, and
/// may lack a child by then): the next collection removes it. A referrer pushed for that subject
/// afterwards keeps its grace.
#[test]
fn a_referrer_whose_subject_a_failed_collection_removed_is_not_dangling() {
    for variant in 0..300 {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Store::init(&root, &Options::default()).unwrap();
        let [_, _, subject] = image_of_variant(&store, variant);
        let signature = |store: &Store, payload: &str| {
            let sig = put(store, payload.as_bytes()).unwrap();
            let empty = put(store, b"{}").unwrap();
            let doc = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": empty.0.as_str(), "size": empty.1},
                "layers": [{"mediaType": "application/octet-stream",
                    "digest": sig.0.as_str(), "size": sig.1}],
                "subject": {"mediaType": MANIFEST, "digest": subject.0.as_str(),
                    "size": subject.1}}))
            .unwrap();
            put(store, &doc).unwrap().0
        };
        let referrer = signature(&store, &format!("signature {variant}"));
        let garbage: Vec<Digest> = store
            .gc(&GcOptions {
                dry_run: true,
                ..GcOptions::default()
            })
            .unwrap()
            .removed
            .iter()
            .map(|r| Digest::parse(&r.digest).unwrap())
            .collect();
        assert_eq!(garbage.len(), 6);
        if garbage.iter().any(|d| *d < subject.0) {
            continue;
        }
        // The first chunk removes the subject; every commit after it fails.
        assert!(gc_in_chunks_of_one(&store, &root, true).is_err());
        drop(store);

        let store = Store::open(&root, &Options::default()).unwrap();
        assert!(store.blob_info(&subject.0).unwrap().is_none());
        assert!(store.blob_info(&referrer).unwrap().is_some());
        // A second referrer, recorded after the subject went (a second later: records count
        // whole seconds).
        std::thread::sleep(Duration::from_millis(1100));
        let later = signature(&store, &format!("later signature {variant}"));
        let report = store.gc(&GcOptions::default()).unwrap();
        let removed: BTreeSet<&str> = report.removed.iter().map(|r| r.digest.as_str()).collect();
        assert!(removed.contains(referrer.as_str()), "{report:?}");
        assert!(store.blob_info(&referrer).unwrap().is_none());
        assert!(store.blob_info(&later).unwrap().is_some(), "{report:?}");
        assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
        return;
    }
    panic!("no variant put the subject first");
}

/// A grace period keeps a blob another tool left in `blobs/` and a dangling referrer, but not
/// once a collection with a shorter grace has begun removing what they reach: key order may take
/// a child first, and if that collection then fails, the next one (default grace) removes the
/// incomplete manifest instead of keeping it as a root that lacks content. Every strategy
/// agrees, and `verify` finds nothing wrong in between.
#[test]
fn a_grace_does_not_keep_what_an_interrupted_collection_began_on() {
    for found in [false, true] {
        let mut tried = 0;
        for variant in 0.. {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("store");
            drop(Store::init(&root, &Options::default()).unwrap());
            let layer = format!("layer {variant}").into_bytes();
            let config = format!(r#"{{"v":{variant}}}"#).into_bytes();
            let pair = |b: &[u8]| (Digest::parse(&sha256_digest(b)).unwrap(), b.len() as u64);
            let (layer_d, config_d) = (pair(&layer), pair(&config));
            let mut doc: serde_json::Value =
                serde_json::from_slice(&image_doc(&config_d, &layer_d)).unwrap();
            if !found {
                // A referrer of a subject that was never pushed: dangling from the start.
                let absent = sha256_digest(format!("absent {variant}").as_bytes());
                doc["subject"] = json!({"mediaType": MANIFEST, "digest": absent, "size": 9});
            }
            let doc = serde_json::to_vec(&doc).unwrap();
            let m = pair(&doc);
            if m.0 < layer_d.0.clone().min(config_d.0.clone()) {
                continue;
            }
            tried += 1;
            let store = if found {
                // Written by another tool while the store was closed: found on open.
                for b in [&layer, &config, &doc] {
                    common::write_blob(&root, b);
                }
                Store::open(&root, &Options::default()).unwrap()
            } else {
                let store = Store::open(&root, &Options::default()).unwrap();
                for b in [&layer, &config, &doc] {
                    put(&store, b).unwrap();
                }
                store
            };
            let dry = store
                .gc(&GcOptions {
                    dry_run: true,
                    ..GcOptions::default()
                })
                .unwrap();
            assert!(
                !dry.removed.iter().any(|r| r.digest == m.0.as_str()),
                "found {found}: the grace protects it"
            );
            // With no grace, the first chunk removes a child; every commit after it fails.
            assert!(gc_in_chunks_of_one(&store, &root, true).is_err());
            drop(store);

            let store = Store::open(&root, &Options::default()).unwrap();
            assert!(store.blob_info(&m.0).unwrap().is_some());
            assert!(
                [&layer_d.0, &config_d.0]
                    .iter()
                    .any(|d| store.blob_info(d).unwrap().is_none())
            );
            let verified = store.verify(&VerifyOptions::default()).unwrap();
            assert!(verified.ok, "found {found}: {:?}", verified.problems);
            for strategy in [Strategy::MarkSweep, Strategy::Refcount, Strategy::Scan] {
                let dry = store
                    .gc(&GcOptions {
                        strategy,
                        dry_run: true,
                        ..GcOptions::default()
                    })
                    .unwrap();
                assert!(
                    dry.removed.iter().any(|r| r.digest == m.0.as_str()),
                    "found {found}, {strategy:?}: {dry:?}"
                );
            }
            store.gc(&GcOptions::default()).unwrap();
            assert!(store.blob_info(&m.0).unwrap().is_none());
            assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
            if tried == 3 {
                break;
            }
        }
    }
}
