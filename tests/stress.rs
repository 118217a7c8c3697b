//! Stress: eight threads share one store for `OCISTORE_STRESS_SECS` seconds (default 30), mixing
//! pushes (plain, batched and leased), referrers, tags, untags, deletes, referrer queries and
//! collections; then the invariants are checked against what the threads know must be live.
//! And two processes contending for the writer lock with a short timeout.
//!
//! Each thread owns its tags and images (names carry the thread's number), so what it knows of
//! them is exact; layers are shared between threads, so a collection must keep a layer that any
//! live image still uses.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ocistore::gc::{DeleteOptions, GcOptions, Strategy};
use ocistore::{Digest, Error, Options, PutOptions, Store};
use serde_json::Value;

const THREADS: usize = 8;
/// Layers every thread draws from.
const SHARED_LAYERS: u64 = 16;

/// A small deterministic generator (xorshift64*), one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len() as u64) as usize])
    }
}

/// A referrer a thread pushed: its subject (an image or another referrer) and its children.
#[derive(Clone, Debug)]
struct Referrer {
    digest: Digest,
    subject: Digest,
    children: Vec<Digest>,
}

/// An image a thread pushed and still holds tags on: it must be live, with its children and its
/// referrers (transitively).
#[derive(Clone, Debug)]
struct Image {
    digest: Digest,
    children: Vec<Digest>,
    tags: BTreeSet<String>,
    referrers: Vec<Referrer>,
}

impl Image {
    /// The referrers pushed on `subject` (the image or one of its referrers).
    fn referrers_of(&self, subject: &Digest) -> BTreeSet<String> {
        let on = self.referrers.iter().filter(|r| r.subject == *subject);
        on.map(|r| r.digest.to_string()).collect()
    }
}

/// Operations done, by kind.
#[derive(Default)]
struct Counters {
    lease_pushes: AtomicU64,
    batch_pushes: AtomicU64,
    referrers_pushed: AtomicU64,
    tags: AtomicU64,
    untags: AtomicU64,
    deletes: AtomicU64,
    queries: AtomicU64,
    verifies: AtomicU64,
    collections: AtomicU64,
    collected_blobs: AtomicU64,
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn descriptor_of(put: &ocistore::Put, media_type: &str) -> Value {
    descriptor(media_type, put.digest.as_str(), put.size)
}

/// Reads `d` back and checks that its bytes hash to it.
fn assert_readable(store: &Store, d: &Digest, what: &str) {
    let bytes = store
        .read_all(d)
        .unwrap_or_else(|e| panic!("{what} {d}: {e}"));
    assert_eq!(Digest::sha256(&bytes), *d, "{what}");
}

struct Worker<'s> {
    store: &'s Store,
    id: usize,
    rng: Rng,
    n: u64,
    images: Vec<Image>,
    counters: &'s Counters,
}

impl Worker<'_> {
    fn fresh(&mut self, what: &str) -> String {
        self.n += 1;
        format!("{what} of thread {} number {}", self.id, self.n)
    }

    /// The contents of a new image: a unique layer of up to 16 KiB, maybe a shared layer, and a
    /// unique config.
    fn image_parts(&mut self) -> Vec<(Vec<u8>, &'static str)> {
        let mut layer = self.fresh("layer").into_bytes();
        layer.resize(layer.len() + self.rng.below(16 << 10) as usize, b'x');
        let mut parts = vec![
            (self.fresh("config").into_bytes(), OCI_CONFIG),
            (layer, OCI_LAYER_GZIP),
        ];
        if self.rng.below(2) == 0 {
            let k = self.rng.below(SHARED_LAYERS);
            parts.push((format!("shared layer {k}").into_bytes(), OCI_LAYER_GZIP));
        }
        parts
    }

    fn record(&mut self, manifest: Digest, children: Vec<Digest>, tag: String) {
        self.images.push(Image {
            digest: manifest,
            children,
            tags: [tag].into(),
            referrers: Vec::new(),
        });
    }

    /// A push of several calls under a lease: blobs, a check that none was collected meanwhile,
    /// the manifest, the tag, then the lease ends.
    fn push_leased(&mut self) {
        let parts = self.image_parts();
        let tag = format!("t{}-{}", self.id, self.n);
        let lease = self.store.lease();
        let puts: Vec<_> = parts
            .iter()
            .map(|(bytes, _)| lease.put(&mut &bytes[..], &PutOptions::default()).unwrap())
            .collect();
        thread::yield_now();
        for p in &puts {
            assert_readable(self.store, &p.digest, "leased blob");
        }
        let m = image_manifest(&parts, &puts);
        let m = lease.put(&mut &m[..], &manifest_opts()).unwrap();
        self.store.tag(m.digest.as_str(), &tag).unwrap();
        drop(lease);
        self.record(m.digest, puts.into_iter().map(|p| p.digest).collect(), tag);
        count(&self.counters.lease_pushes);
    }

    /// A push in one batch: one transaction, nothing visible before the commit.
    fn push_batched(&mut self) {
        let parts = self.image_parts();
        let tag = format!("t{}-{}", self.id, self.n);
        let mut b = self.store.batch().unwrap();
        let puts: Vec<_> = parts
            .iter()
            .map(|(bytes, _)| b.put(&mut &bytes[..], &PutOptions::default()).unwrap())
            .collect();
        let m = image_manifest(&parts, &puts);
        let m = b.put(&mut &m[..], &manifest_opts()).unwrap();
        b.tag(m.digest.as_str(), &tag).unwrap();
        b.commit().unwrap();
        self.record(m.digest, puts.into_iter().map(|p| p.digest).collect(), tag);
        count(&self.counters.batch_pushes);
    }

    /// A signature on one of the thread's images, or on one of its referrers (a signature on an
    /// SBOM), pushed under a lease.
    fn push_referrer(&mut self) {
        if self.images.is_empty() {
            return self.push_batched();
        }
        let i = self.rng.below(self.images.len() as u64) as usize;
        let subject = match self.rng.pick(&self.images[i].referrers) {
            Some(r) if self.rng.below(3) == 0 => r.digest.clone(),
            _ => self.images[i].digest.clone(),
        };
        let subject_size = self.store.blob_info(&subject).unwrap().unwrap().size;
        let payload = self.fresh("signature");
        let lease = self.store.lease();
        let empty = lease.put(&mut &b"{}"[..], &PutOptions::default()).unwrap();
        let sig = lease
            .put(&mut payload.as_bytes(), &PutOptions::default())
            .unwrap();
        let m = manifest_json(
            descriptor_of(&empty, OCI_EMPTY),
            vec![descriptor_of(&sig, "application/octet-stream")],
            Some(descriptor(OCI_MANIFEST, subject.as_str(), subject_size)),
            Some(SIGNATURE_TYPE),
            &[],
        );
        let m = lease.put(&mut &m[..], &manifest_opts()).unwrap();
        drop(lease);
        self.images[i].referrers.push(Referrer {
            digest: m.digest,
            subject,
            children: vec![empty.digest, sig.digest],
        });
        count(&self.counters.referrers_pushed);
    }

    fn tag(&mut self) {
        let Some(i) = self.some_image() else { return };
        self.n += 1;
        let tag = format!("t{}-x{}", self.id, self.n);
        self.store
            .tag(self.images[i].digest.as_str(), &tag)
            .unwrap();
        self.images[i].tags.insert(tag);
        count(&self.counters.tags);
    }

    /// Removes a tag; the last one drops the image from what must be live.
    fn untag(&mut self) {
        let Some(i) = self.some_image() else { return };
        let tag = self.images[i].tags.iter().next().unwrap().clone();
        let d = self.store.untag(&tag).unwrap();
        assert_eq!(d, self.images[i].digest);
        self.images[i].tags.remove(&tag);
        if self.images[i].tags.is_empty() {
            self.images.swap_remove(i);
        }
        count(&self.counters.untags);
    }

    /// Deletes an image by digest: with its tags and its referrers.
    fn delete(&mut self) {
        let Some(i) = self.some_image() else { return };
        let image = self.images.swap_remove(i);
        let r = self
            .store
            .delete(image.digest.as_str(), &DeleteOptions::default())
            .unwrap();
        let gone: BTreeSet<&str> = r.removed.iter().map(|x| x.digest.as_str()).collect();
        assert!(gone.contains(image.digest.as_str()));
        for referrer in &image.referrers {
            assert!(gone.contains(referrer.digest.as_str()), "{r:?}");
        }
        assert_eq!(r.tags.iter().cloned().collect::<BTreeSet<_>>(), image.tags);
        count(&self.counters.deletes);
    }

    /// The referrers of an image (or of one of its referrers) are exactly those pushed on it.
    fn query(&mut self) {
        let Some(i) = self.some_image() else { return };
        let image = &self.images[i];
        let subject = match self.rng.pick(&image.referrers) {
            Some(r) if self.rng.below(2) == 0 => r.digest.clone(),
            _ => image.digest.clone(),
        };
        assert_eq!(
            referrer_digests(self.store, &subject, false),
            image.referrers_of(&subject),
            "referrers of {subject}"
        );
        if subject == image.digest {
            let all = referrer_digests(self.store, &subject, true);
            assert_eq!(all.len(), image.referrers.len());
        }
        count(&self.counters.queries);
    }

    /// One of the thread's images reads back whole, while other threads collect.
    fn verify(&mut self) {
        let Some(i) = self.some_image() else { return };
        assert_image(self.store, &self.images[i]);
        count(&self.counters.verifies);
    }

    fn collect(&mut self) {
        let strategy = if self.rng.below(2) == 0 {
            Strategy::MarkSweep
        } else {
            Strategy::Refcount
        };
        let r = self
            .store
            .gc(&GcOptions {
                strategy,
                grace: Duration::ZERO,
                chunk: 1 + self.rng.below(64) as usize,
                ..Default::default()
            })
            .unwrap();
        let mine = live_set(&self.images);
        for x in &r.removed {
            assert!(!mine.contains(x.digest.as_str()), "collected live {x:?}");
        }
        count(&self.counters.collections);
        self.counters
            .collected_blobs
            .fetch_add(r.removed_blobs, Ordering::Relaxed);
    }

    fn some_image(&mut self) -> Option<usize> {
        (!self.images.is_empty()).then(|| self.rng.below(self.images.len() as u64) as usize)
    }

    fn run(mut self, until: Instant) -> Vec<Image> {
        while Instant::now() < until {
            match self.rng.below(100) {
                0..15 => self.push_leased(),
                15..30 => self.push_batched(),
                30..45 => self.push_referrer(),
                45..55 => self.tag(),
                55..63 => self.untag(),
                63..70 => self.delete(),
                70..85 => self.query(),
                85..95 => self.verify(),
                _ => self.collect(),
            }
        }
        self.images
    }
}

/// The manifest of an image whose first part is its config and the rest its layers.
fn image_manifest(parts: &[(Vec<u8>, &str)], puts: &[ocistore::Put]) -> Vec<u8> {
    let descs: Vec<Value> = puts
        .iter()
        .zip(parts)
        .map(|(p, (_, mt))| descriptor_of(p, mt))
        .collect();
    manifest_json(descs[0].clone(), descs[1..].to_vec(), None, None, &[])
}

fn manifest_opts() -> PutOptions {
    PutOptions {
        media_type: Some(OCI_MANIFEST.into()),
        ..Default::default()
    }
}

/// Every digest that must stay: the images, their children, their referrers and theirs.
fn live_set(images: &[Image]) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for image in images {
        out.insert(image.digest.as_str());
        out.extend(image.children.iter().map(Digest::as_str));
        for r in &image.referrers {
            out.insert(r.digest.as_str());
            out.extend(r.children.iter().map(Digest::as_str));
        }
    }
    out
}

/// The image, its children and its referrers (with theirs) are present and hash to their
/// digests; its tags name it; its referrers are answered.
fn assert_image(store: &Store, image: &Image) {
    assert_readable(store, &image.digest, "live image");
    for c in &image.children {
        assert_readable(store, c, "child of a live image");
    }
    for r in &image.referrers {
        assert_readable(store, &r.digest, "referrer of a live image");
        for c in &r.children {
            assert_readable(store, c, "child of a referrer");
        }
    }
    for t in &image.tags {
        assert_eq!(store.resolve(t).unwrap(), image.digest, "tag {t}");
    }
}

fn stress_secs() -> u64 {
    std::env::var("OCISTORE_STRESS_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[test]
fn eight_threads_mixing_every_operation_lose_nothing_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let counters = Counters::default();
    // Content held only by a lease, for the whole run: every collection must keep it.
    let held = store.lease();
    let leased: Vec<Digest> = (0..20)
        .map(|i| {
            let bytes = format!("held by a lease for the whole run {i}");
            held.put(&mut bytes.as_bytes(), &PutOptions::default())
                .unwrap()
                .digest
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(stress_secs());
    let images: Vec<Image> = thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|id| {
                let w = Worker {
                    store: &store,
                    id,
                    rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (id as u64 + 1).wrapping_mul(0xbf58_476d)),
                    n: 0,
                    images: Vec::new(),
                    counters: &counters,
                };
                s.spawn(move || w.run(until))
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "{}s, {THREADS} threads: {} leased pushes, {} batched pushes, {} referrers, {} tags, \
         {} untags, {} deletes, {} referrer queries, {} verifications, {} collections \
         ({} blobs collected); {} live images at the end",
        stress_secs(),
        c(&counters.lease_pushes),
        c(&counters.batch_pushes),
        c(&counters.referrers_pushed),
        c(&counters.tags),
        c(&counters.untags),
        c(&counters.deletes),
        c(&counters.queries),
        c(&counters.verifies),
        c(&counters.collections),
        c(&counters.collected_blobs),
        images.len(),
    );
    assert!(c(&counters.collections) > 0 && c(&counters.lease_pushes) > 0);

    // Every live image is whole, with its referrers; the leased content is there.
    let live = live_set(&images);
    for image in &images {
        assert_image(&store, image);
        assert_eq!(
            referrer_digests(&store, &image.digest, false),
            image.referrers_of(&image.digest)
        );
    }
    // A collection now keeps the live set and the leased content, and removes the rest.
    let r = collect_now(&store);
    assert!(r.removed.iter().all(|x| !live.contains(x.digest.as_str())));
    for d in &leased {
        assert_readable(&store, d, "leased blob");
    }
    drop(held);

    // The tags are exactly the ones the threads hold, in the store and in index.json.
    let want_tags: BTreeMap<String, String> = images
        .iter()
        .flat_map(|i| i.tags.iter().map(|t| (t.clone(), i.digest.to_string())))
        .collect();
    assert_eq!(store_tags(&store), want_tags);
    assert_eq!(index_json_tags(dir.path()), want_tags);
    drop(store);

    // Reopening: a clean close, nothing to reconcile; a second collection removes nothing live
    // (only the content the lease held), and a third removes nothing at all.
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(!store.open_report().recovered);
    assert!(store.open_report().reconciled.is_none());
    let r = collect_now(&store);
    let removed: BTreeSet<&str> = r.removed.iter().map(|x| x.digest.as_str()).collect();
    let leased: BTreeSet<&str> = leased.iter().map(Digest::as_str).collect();
    assert_eq!(removed, leased);
    let r = collect_now(&store);
    assert_eq!(r.removed_blobs, 0, "{:?}", r.removed);
    for image in &images {
        assert_image(&store, image);
    }
    assert_eq!(store_tags(&store), want_tags);
    assert_eq!(index_json_tags(dir.path()), want_tags);
    // The index and blobs/ agree, and no temporary file is left.
    let files = fs::read_dir(dir.path().join("blobs/sha256"))
        .unwrap()
        .count() as u64;
    assert_eq!(store.stats().unwrap().blobs, files);
    assert_eq!(store.stats().unwrap().blobs as usize, live.len());
    assert!(ingest_files(dir.path()).is_empty());
}

/// Writes each child makes before it stops.
const WRITES_PER_PROCESS: usize = 25;

/// Child: opens the store writable with a short lock timeout, writes one image and its tag,
/// closes, and says `wrote <tag> <digest>`; `locked` when the other process held the store
/// beyond the timeout. Any other error fails the child.
#[test]
#[ignore = "helper process for two_processes_contending_with_short_timeouts"]
fn helper_write_briefly() {
    let Ok(dir) = std::env::var("OCISTORE_TEST_STORE") else {
        return;
    };
    let who = std::env::var("OCISTORE_TEST_ARG").unwrap();
    let opts = Options {
        lock_timeout: Duration::from_millis(20),
        ..Options::default()
    };
    let mut done = 0;
    let mut attempt = 0;
    while done < WRITES_PER_PROCESS {
        attempt += 1;
        let store = match Store::open(&dir, &opts) {
            Ok(s) => s,
            Err(e @ Error::Locked { .. }) => {
                let msg = e.to_string();
                assert!(!msg.contains('\n'), "{msg}");
                assert!(
                    msg.starts_with("store is locked by another writer ("),
                    "{msg}"
                );
                // The holder writes its pid just after taking the lock: a waiter that gives up
                // in between finds no pid yet.
                if msg.contains("(unknown process)") {
                    println!("locked, holder not yet recorded");
                } else {
                    println!("locked");
                }
                continue;
            }
            Err(e) => panic!("open: {e}"),
        };
        let tag = format!("{who}-{done}");
        let config = store
            .put(
                &mut format!("{who} attempt {attempt}").as_bytes(),
                &PutOptions::default(),
            )
            .unwrap();
        let m = manifest_json(descriptor_of(&config, OCI_CONFIG), vec![], None, None, &[]);
        let m = store.put(&mut &m[..], &manifest_opts()).unwrap();
        store.tag(m.digest.as_str(), &tag).unwrap();
        drop(store);
        println!("wrote {tag} {}", m.digest);
        done += 1;
    }
}

/// What a child reported: its writes (tag -> digest) and how many opens found the store locked.
fn reports(child: &mut std::process::Child) -> (BTreeMap<String, String>, u64) {
    let mut wrote = BTreeMap::new();
    let mut locked = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(at) = line.find("wrote ") {
            let mut parts = line[at + 6..].split(' ');
            let (tag, digest) = (parts.next().unwrap(), parts.next().unwrap());
            wrote.insert(tag.to_owned(), digest.to_owned());
        } else if line.contains("locked") {
            locked += 1;
        }
    }
    (wrote, locked)
}

#[test]
fn two_processes_contending_with_short_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::init(dir.path(), &Options::default()).unwrap());
    let spawn = |who: &str| {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "helper_write_briefly",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OCISTORE_TEST_STORE", dir.path())
            .env("OCISTORE_TEST_ARG", who)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap()
    };
    let mut a = spawn("a");
    let mut b = spawn("b");
    let reader_b = thread::spawn(move || {
        let r = reports(&mut b);
        (r, b.wait().unwrap())
    });
    let (a_reports, a_status) = (reports(&mut a), a.wait().unwrap());
    let (b_reports, b_status) = reader_b.join().unwrap();
    assert!(a_status.success() && b_status.success());
    eprintln!(
        "process a: {} writes, {} opens refused as locked; process b: {} writes, {} refused",
        a_reports.0.len(),
        a_reports.1,
        b_reports.0.len(),
        b_reports.1
    );
    // Both made progress, and every write that reported success is in the store.
    assert_eq!(a_reports.0.len(), WRITES_PER_PROCESS);
    assert_eq!(b_reports.0.len(), WRITES_PER_PROCESS);
    let mut wrote = a_reports.0;
    wrote.extend(b_reports.0);
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(!store.open_report().recovered);
    assert!(store.open_report().reconciled.is_none());
    assert_eq!(store_tags(&store), wrote);
    assert_eq!(index_json_tags(dir.path()), wrote);
    for d in wrote.values() {
        assert_readable(&store, &d.parse().unwrap(), "written image");
    }
}
