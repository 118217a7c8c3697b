//! Fixtures shared by the store benchmarks: built once under `target/bench-data/` and reused
//! while their completion marker says they are complete and of the current generator version.
//!
//! Each bench binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ocistore::{Digest, Options, PutOptions, ReferrersQuery, Store};

/// Bump when the generated content changes, so that cached fixtures are rebuilt.
const GENERATOR: &str = "v1";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
const SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SIG_LAYER: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// Images in the large store.
pub const IMAGES: usize = 20_000;
/// Store sizes (images) the open benchmark compares.
pub const STORE_SIZES: [usize; 3] = [1_000, 5_000, IMAGES];
/// Images per batch while building it.
const CHUNK: usize = 2_000;
/// Every `SIGNED_EVERY`th image gets a signature referrer.
const SIGNED_EVERY: usize = 10;
/// Distinct base layers shared by the even-numbered images.
const SHARED_LAYERS: usize = 100;
/// Fan-outs of the small referrers store.
pub const FANOUTS: [usize; 4] = [1, 10, 100, 1000];

/// `<crate>/target/bench-data`, created if missing.
pub fn data_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    fs::create_dir_all(&dir).expect("create target/bench-data");
    dir
}

/// A scratch directory on the same file system as the fixtures (not a tmpfs `/tmp`).
pub fn scratch_dir() -> PathBuf {
    let dir = data_dir().join("tmp");
    fs::create_dir_all(&dir).expect("create target/bench-data/tmp");
    dir
}

/// Deterministic pseudo-random bytes: the BLAKE3 extendable output of `label`.
fn bytes_of(label: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(label.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn descriptor(media_type: &str, bytes: &[u8]) -> String {
    format!(
        r#"{{"mediaType":"{media_type}","digest":"{}","size":{}}}"#,
        Digest::sha256(bytes),
        bytes.len()
    )
}

fn put_opts(media_type: &str, bytes: &[u8]) -> PutOptions {
    PutOptions {
        media_type: Some(media_type.to_owned()),
        digest: Some(Digest::sha256(bytes)),
        size: Some(bytes.len() as u64),
    }
}

/// One blob to store.
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob { media_type, bytes }
    }

    fn descriptor(&self) -> String {
        descriptor(self.media_type, &self.bytes)
    }

    /// Its media type, digest and size, as a client that knows them passes them.
    pub fn opts(&self) -> PutOptions {
        put_opts(self.media_type, &self.bytes)
    }

    pub fn put(&self, b: &mut ocistore::Batch<'_>) -> Digest {
        b.put(&mut self.bytes.as_slice(), &self.opts())
            .expect("put")
            .digest
    }
}

/// Image `i` of the large store: its config, 1..=3 layers (the first one shared with other
/// images for even `i`), and its manifest.
fn image(i: usize) -> (Blob, Vec<Blob>, Blob) {
    let config = Blob::new(
        OCI_CONFIG,
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"bench.image":"{i}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes(),
    );
    let layers: Vec<Blob> = (0..1 + i % 3)
        .map(|j| {
            let label = if j == 0 && i.is_multiple_of(2) {
                format!("shared layer {}", (i / 2) % SHARED_LAYERS)
            } else {
                format!("layer {i}/{j}")
            };
            let len = 256 + (i * 7 + j * 131) % 1792;
            Blob::new(OCI_LAYER, bytes_of(&label, len))
        })
        .collect();
    let manifest = Blob::new(
        OCI_MANIFEST,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}],"annotations":{{"bench.image":"{i}"}}}}"#,
            config.descriptor(),
            layers.iter().map(Blob::descriptor).collect::<Vec<_>>().join(",")
        )
        .into_bytes(),
    );
    (config, layers, manifest)
}

/// Images of the manifest ingest benchmark sharing one base layer.
const IMAGES_PER_BASE: usize = 10;

/// Image `i` of the manifest ingest benchmark, distinct for each `(set, i)`: a config of its
/// own, two layers (a base shared by [`IMAGES_PER_BASE`] images, then one of its own), and a
/// manifest of about 600 bytes.
pub fn small_image(set: &str, i: usize) -> (Blob, [Blob; 2], Blob) {
    let config = Blob::new(
        OCI_CONFIG,
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Labels":{{"bench.set":"{set}","bench.image":"{i}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        )
        .into_bytes(),
    );
    let base = format!("{set} base layer {}", i / IMAGES_PER_BASE);
    let own = format!("{set} layer {i}");
    let layers = [
        Blob::new(OCI_LAYER, bytes_of(&base, 2048)),
        Blob::new(OCI_LAYER, bytes_of(&own, 256 + (i * 7) % 1792)),
    ];
    let manifest = Blob::new(
        OCI_MANIFEST,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{},{}],"annotations":{{"bench.image":"{set}/{i}"}}}}"#,
            config.descriptor(),
            layers[0].descriptor(),
            layers[1].descriptor(),
        )
        .into_bytes(),
    );
    (config, layers, manifest)
}

/// A signature referrer of `subject` (a manifest blob): an empty config, one signature layer.
fn signature(subject: &Blob, label: &str) -> (Blob, Blob) {
    let sig = Blob::new(
        SIG_LAYER,
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"bench"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":{{"n":"{label}"}}}}"#,
            Digest::sha256(&subject.bytes)
        )
        .into_bytes(),
    );
    let manifest = Blob::new(
        OCI_MANIFEST,
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"{SIG_ARTIFACT}","config":{},"layers":[{}],"subject":{},"annotations":{{"dev.cosignproject.cosign/signature":"{label}","org.opencontainers.image.created":"2025-01-01T00:00:00Z"}}}}"#,
            descriptor(OCI_EMPTY, b"{}"),
            sig.descriptor(),
            subject.descriptor(),
        )
        .into_bytes(),
    );
    (sig, manifest)
}

fn empty_config() -> Blob {
    Blob::new(OCI_EMPTY, b"{}".to_vec())
}

/// Reads the marker of a complete fixture: its lines after the generator version.
fn read_marker(marker: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(marker).ok()?;
    let mut lines = text.lines();
    (lines.next()? == GENERATOR).then(|| lines.map(str::to_owned).collect())
}

fn write_marker(marker: &Path, lines: &[String]) {
    let mut text = format!("{GENERATOR}\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    fs::write(marker, text).expect("write marker");
}

/// Starts a fixture from scratch: removes any incomplete copy.
fn fresh(root: &Path, marker: &Path) {
    let _ = fs::remove_file(marker);
    if root.exists() {
        fs::remove_dir_all(root).expect("remove incomplete fixture");
    }
}

/// Whether a fixture opens cleanly, writable (no recovery, no reconciliation: the open benchmark
/// must measure the fast path) and read-only.
fn opens_cleanly(root: &Path) -> std::result::Result<(), String> {
    let store = Store::open(root, &Options::default()).map_err(|e| e.to_string())?;
    let r = store.open_report();
    if r.recovered || r.reconciled.is_some() || r.created_index {
        return Err(format!("reopen was not clean: {r:?}"));
    }
    drop(store);
    Store::open_read_only(root, &Options::default()).map_err(|e| e.to_string())?;
    Ok(())
}

fn check_clean(root: &Path) {
    if let Err(e) = opens_cleanly(root) {
        panic!("fixture {} does not reopen cleanly: {e}", root.display());
    }
}

/// Whether a cached fixture can be reused: its marker is there and of this generator version,
/// and it opens cleanly with the library as it is now (a cached index written by an older
/// build of the library may not open).
fn cached(root: &Path, marker: &Path) -> Option<Vec<String>> {
    let lines = read_marker(marker)?;
    match opens_cleanly(root) {
        Ok(()) => Some(lines),
        Err(e) => {
            eprintln!(
                "cached {} is not reusable ({e}): rebuilding",
                root.display()
            );
            None
        }
    }
}

/// The large store: [`IMAGES`] tagged images, every 10th signed. See [`store_of`].
pub fn store_20k() -> (PathBuf, Digest) {
    store_of(IMAGES)
}

/// A store of `images` tagged images (image `i` tagged `img-<i>`, every 10th signed), cached as
/// `target/bench-data/store-<size>`. Returns its root and the digest of an image with exactly
/// one referrer. Image `i` is the same in every size, so a smaller store is a prefix of a larger.
pub fn store_of(images: usize) -> (PathBuf, Digest) {
    assert!(images > 0, "a store of no images has no signed image");
    let name = if images.is_multiple_of(1_000) {
        format!("store-{}k", images / 1_000)
    } else {
        format!("store-{images}")
    };
    let root = data_dir().join(&name);
    let marker = data_dir().join(format!("{name}.complete"));
    if let Some(lines) = cached(&root, &marker)
        && let Some(Ok(subject)) = lines.first().map(|l| Digest::parse(l))
    {
        return (root, subject);
    }
    fresh(&root, &marker);
    eprintln!("building {} (once; cached afterwards)", root.display());
    let start = Instant::now();
    let store = Store::init(&root, &Options::default()).expect("init store");
    let empty = empty_config();
    let mut first_signed = None;
    for chunk in 0..images.div_ceil(CHUNK) {
        let mut b = store.batch().expect("batch");
        empty.put(&mut b);
        for i in chunk * CHUNK..((chunk + 1) * CHUNK).min(images) {
            let (config, layers, manifest) = image(i);
            config.put(&mut b);
            for l in &layers {
                l.put(&mut b);
            }
            let digest = manifest.put(&mut b);
            b.tag(digest.as_str(), &format!("img-{i:05}")).expect("tag");
            if i.is_multiple_of(SIGNED_EVERY) {
                let (sig, sig_manifest) = signature(&manifest, &format!("sig {i}"));
                sig.put(&mut b);
                sig_manifest.put(&mut b);
                first_signed.get_or_insert(digest);
            }
        }
        b.commit().expect("commit");
        eprintln!(
            "  {} images in {:.1?}",
            ((chunk + 1) * CHUNK).min(images),
            start.elapsed()
        );
    }
    let stats = store.stats().expect("stats");
    assert_eq!(stats.tags, images as u64);
    drop(store); // a clean close clears the unclean mark
    check_clean(&root);
    let subject = first_signed.expect("a signed image");
    let probe = Store::open_read_only(&root, &Options::default()).expect("open read-only");
    assert_eq!(
        probe
            .referrers(&subject, &ReferrersQuery::default())
            .expect("referrers")
            .manifests
            .len(),
        1
    );
    drop(probe);
    eprintln!("built {name} in {:.1?}: {stats:?}", start.elapsed());
    write_marker(&marker, &[subject.to_string()]);
    (root, subject)
}

/// The small referrers store: one image per entry of [`FANOUTS`], with that many referrers.
/// Returns its root and `(fan-out, subject)` pairs.
pub fn fanout_store() -> (PathBuf, Vec<(usize, Digest)>) {
    let root = data_dir().join("fanout");
    let marker = data_dir().join("fanout.complete");
    if let Some(lines) = cached(&root, &marker) {
        let subjects: Option<Vec<(usize, Digest)>> = lines
            .iter()
            .map(|l| {
                let (n, d) = l.split_once(' ')?;
                Some((n.parse().ok()?, Digest::parse(d).ok()?))
            })
            .collect();
        if let Some(s) = subjects
            && s.len() == FANOUTS.len()
        {
            return (root, s);
        }
    }
    fresh(&root, &marker);
    eprintln!("building {} (once; cached afterwards)", root.display());
    let store = Store::init(&root, &Options::default()).expect("init fanout store");
    let mut b = store.batch().expect("batch");
    empty_config().put(&mut b);
    let mut subjects = Vec::new();
    for n in FANOUTS {
        // Image numbers past the large store's, so contents differ from it.
        let (config, layers, manifest) = image(1_000_000 + n);
        config.put(&mut b);
        for l in &layers {
            l.put(&mut b);
        }
        let digest = manifest.put(&mut b);
        b.tag(digest.as_str(), &format!("fanout-{n}")).expect("tag");
        for k in 0..n {
            let (sig, sig_manifest) = signature(&manifest, &format!("fanout {n} sig {k}"));
            sig.put(&mut b);
            sig_manifest.put(&mut b);
        }
        subjects.push((n, digest));
    }
    b.commit().expect("commit");
    for (n, d) in &subjects {
        let got = store
            .referrers(d, &ReferrersQuery::default())
            .expect("referrers")
            .manifests
            .len();
        assert_eq!(got, *n);
    }
    drop(store);
    check_clean(&root);
    write_marker(
        &marker,
        &subjects
            .iter()
            .map(|(n, d)| format!("{n} {d}"))
            .collect::<Vec<_>>(),
    );
    (root, subjects)
}

/// A file of `size` pseudo-random bytes under `target/bench-data/`, and its sha256 digest.
pub fn random_file(name: &str, size: u64) -> (PathBuf, Digest) {
    let path = data_dir().join(name);
    let digest_path = data_dir().join(format!("{name}.sha256"));
    if fs::metadata(&path).is_ok_and(|m| m.len() == size)
        && let Ok(text) = fs::read_to_string(&digest_path)
        && let Ok(d) = Digest::parse(text.trim())
    {
        return (path, d);
    }
    eprintln!("writing {} ({size} bytes, once)", path.display());
    let partial = data_dir().join(format!("{name}.partial"));
    let mut out = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(&partial).unwrap());
    let mut xof = blake3::Hasher::new().update(name.as_bytes()).finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        out.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    out.into_inner().unwrap().sync_all().unwrap();
    fs::rename(&partial, &path).unwrap();
    let digest = sha256_file(&path);
    fs::write(&digest_path, format!("{digest}\n")).unwrap();
    (path, digest)
}

/// The baseline: sha256 of a file with 256 KiB reads (the store's ingest buffer size).
pub fn sha256_file(path: &Path) -> Digest {
    use sha2::Digest as _;
    let mut f = fs::File::open(path).expect("open");
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }
    Digest::parse(&format!("sha256:{}", hex::encode(h.finalize()))).expect("digest")
}

/// Blobs of the verify store: (count, size). About 1.1 GiB in all: big layers, and many small
/// files, where per-file costs show.
pub const VERIFY_BLOBS: [(usize, usize); 2] = [(32, 32 << 20), (2048, 64 << 10)];

/// The verify store: [`VERIFY_BLOBS`] of pseudo-random content, written with `Store::put`.
/// Returns its root and its total bytes.
pub fn verify_store() -> (PathBuf, u64) {
    let root = data_dir().join("store-verify");
    let marker = data_dir().join("store-verify.complete");
    if let Some(lines) = cached(&root, &marker)
        && let Some(Ok(bytes)) = lines.first().map(|l| l.parse())
    {
        return (root, bytes);
    }
    fresh(&root, &marker);
    eprintln!("building {} (once; cached afterwards)", root.display());
    let store = Store::init(&root, &Options::default()).expect("init store-verify");
    let mut total = 0u64;
    for (count, size) in VERIFY_BLOBS {
        for i in 0..count {
            let bytes = bytes_of(&format!("verify {size} {i}"), size);
            store
                .put(&mut &bytes[..], &PutOptions::default())
                .expect("put");
            total += size as u64;
        }
    }
    drop(store);
    check_clean(&root);
    write_marker(&marker, &[total.to_string()]);
    (root, total)
}
