//! Ingest, tags, index.json, reconcile, batches, rebuild and threads, against real files.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use ocistore::{Digest, Error, Options, PutOptions, ReferrersQuery, Store};
use serde_json::{Value, json};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn put(store: &Store, bytes: &[u8]) -> Digest {
    store
        .put(&mut &bytes[..], &PutOptions::default())
        .unwrap()
        .digest
}

/// An image manifest over a fresh config and layer, with an optional subject.
fn image(store: &Store, name: &str, subject: Option<&Digest>) -> Digest {
    let layer = put(store, format!("layer of {name}").as_bytes());
    let config = put(store, format!(r#"{{"name":"{name}"}}"#).as_bytes());
    let mut m = json!({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": 13 + name.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.as_str(), "size": 9 + name.len()}],
    });
    if let Some(s) = subject {
        m["subject"] = json!({"mediaType": MANIFEST, "digest": s.as_str(), "size": 1});
        m["artifactType"] = json!("application/vnd.example.signature");
    }
    let bytes = serde_json::to_vec(&m).unwrap();
    store
        .put(
            &mut &bytes[..],
            &PutOptions {
                media_type: Some(MANIFEST.into()),
                ..Default::default()
            },
        )
        .unwrap()
        .digest
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn index_json(root: &Path) -> Value {
    serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap()
}

fn tags_in_file(root: &Path) -> Vec<(String, String)> {
    let mut out: Vec<_> = index_json(root)["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let t = e["annotations"]["org.opencontainers.image.ref.name"].as_str()?;
            Some((t.to_owned(), e["digest"].as_str().unwrap().to_owned()))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn init_creates_a_valid_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert_eq!(index_json(dir.path())["manifests"], json!([]));
    assert!(store.open_report().created_index);
    drop(store);
    let again = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(!again.open_report().created_index);
    assert!(!again.open_report().recovered);
}

#[test]
fn init_refuses_a_directory_that_is_not_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("precious.txt"), b"mine").unwrap();
    let err = Store::init(dir.path(), &Options::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidLayout { .. }), "{err}");
    assert_eq!(fs::read(dir.path().join("precious.txt")).unwrap(), b"mine");
    assert!(!dir.path().join("index.json").exists());
    let err = Store::open(dir.path(), &Options::default()).unwrap_err();
    assert!(err.to_string().contains("oci-layout is missing"), "{err}");
}

#[test]
fn digests_of_every_registered_algorithm_are_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let data = b"some content";
    for alg in [
        ocistore::Algorithm::Sha256,
        ocistore::Algorithm::Sha512,
        ocistore::Algorithm::Blake3,
    ] {
        let mut h = ocistore::digest::Hasher::new(alg).unwrap();
        h.update(data);
        let d = h.finish();
        // Content that does not hash to the digest is refused.
        let err = store
            .put(
                &mut &b"other content"[..],
                &PutOptions {
                    digest: Some(d.clone()),
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(store.blob_info(&d).unwrap().is_none());
        let put = store
            .put(
                &mut &data[..],
                &PutOptions {
                    digest: Some(d.clone()),
                    size: Some(data.len() as u64),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(put.digest, d);
        assert!(store.blob_info(&d).unwrap().unwrap().verified);
        assert_eq!(fs::read(dir.path().join(d.blob_path())).unwrap(), data);
    }
}

#[test]
fn unregistered_algorithms_are_stored_opaquely_and_marked_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let d: Digest = "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8"
        .parse()
        .unwrap();
    assert!(!d.is_verifiable());
    let put = store
        .put(
            &mut &b"opaque"[..],
            &PutOptions {
                digest: Some(d.clone()),
                size: Some(6),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(put.digest, d);
    assert!(!store.blob_info(&d).unwrap().unwrap().verified);
    assert_eq!(store.read_all(&d).unwrap(), b"opaque");
    // Without a size there is nothing at all to check: refused, with a message that says why.
    let d2: Digest = "foo:abc".parse().unwrap();
    let err = store
        .put(
            &mut &b"x"[..],
            &PutOptions {
                digest: Some(d2.clone()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("not supported"), "{err}");
    assert!(store.blob_info(&d2).unwrap().is_none());
}

#[test]
fn a_mismatched_digest_or_size_leaves_no_file_and_no_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let before = files_under(dir.path());
    let stats = store.stats().unwrap();
    let claimed = Digest::sha256(b"what was announced");
    let err = store
        .put(
            &mut &b"what was sent"[..],
            &PutOptions {
                digest: Some(claimed.clone()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let actual = Digest::sha256(b"what was sent");
    let err = store
        .put(
            &mut &b"what was sent"[..],
            &PutOptions {
                digest: Some(actual.clone()),
                size: Some(3),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    let err = store
        .put(
            &mut &b"what was sent"[..],
            &PutOptions {
                size: Some(100),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    for d in [&claimed, &actual] {
        assert!(store.blob_info(d).unwrap().is_none());
        assert!(!dir.path().join(d.blob_path()).exists());
    }
    assert_eq!(store.stats().unwrap(), stats);
    assert_eq!(files_under(dir.path()), before, "a file was left behind");
    assert!(files_under(&dir.path().join(".ocistore/ingest")).is_empty());
}

#[test]
fn a_duplicate_with_a_known_digest_is_not_read() {
    struct Refuse;
    impl Read for Refuse {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("the reader was read"))
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let d = put(&store, b"once");
    let ino = fs::metadata(dir.path().join(d.blob_path())).unwrap().ino();
    let again = store
        .put(
            &mut Refuse,
            &PutOptions {
                digest: Some(d.clone()),
                size: Some(4),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(again.existed);
    // Without the digest, the content is hashed but nothing is written.
    let again = store
        .put(&mut &b"once"[..], &PutOptions::default())
        .unwrap();
    assert!(again.existed);
    assert_eq!(
        fs::metadata(dir.path().join(d.blob_path())).unwrap().ino(),
        ino
    );
    assert!(files_under(&dir.path().join(".ocistore/ingest")).is_empty());
}

/// A reader of `len` pseudo-random bytes that never holds more than one buffer.
struct Stream {
    left: u64,
    state: u64,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.state = self
                .state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.state >> 56) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn large_blobs_stream_in_constant_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let len: u64 = 384 << 20;
    let mut h = ocistore::digest::Hasher::new(ocistore::Algorithm::Sha256).unwrap();
    let mut s = Stream {
        left: len,
        state: 7,
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let expected = h.finish();
    let before = peak_rss_kib();
    let put = store
        .put(
            &mut Stream {
                left: len,
                state: 7,
            },
            &PutOptions {
                digest: Some(expected.clone()),
                size: Some(len),
                ..Default::default()
            },
        )
        .unwrap();
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    assert_eq!(put.digest, expected);
    assert_eq!(
        fs::metadata(dir.path().join(expected.blob_path()))
            .unwrap()
            .len(),
        len
    );
    // 384 MiB went through; the process grew by far less (buffers and the manifest sniff window).
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB while ingesting 384 MiB"
    );
}

/// Past a few MiB, hashing runs on a second thread beside the writes: a mismatch found there, or
/// a size exceeded while it runs, still leaves nothing behind.
#[test]
fn a_large_mismatch_leaves_no_file_either() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let before = files_under(dir.path());
    let len: u64 = 24 << 20;
    let claimed = Digest::sha256(b"not this content");
    let err = store
        .put(
            &mut Stream {
                left: len,
                state: 3,
            },
            &PutOptions {
                digest: Some(claimed.clone()),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    let err = store
        .put(
            &mut Stream {
                left: len,
                state: 3,
            },
            &PutOptions {
                size: Some(len - (10 << 20)),
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err}");
    assert_eq!(files_under(dir.path()), before, "a file was left behind");
    assert!(files_under(&dir.path().join(".ocistore/ingest")).is_empty());
    // The same content put without claims hashes the same as hashing it in one go.
    let mut h = ocistore::digest::Hasher::new(ocistore::Algorithm::Sha256).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let mut s = Stream {
        left: len,
        state: 3,
    };
    loop {
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let put = store
        .put(
            &mut Stream {
                left: len,
                state: 3,
            },
            &PutOptions::default(),
        )
        .unwrap();
    assert_eq!(put.digest, h.finish());
}

#[test]
fn tags_are_written_to_index_json_and_moved_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let a = image(&store, "a", None);
    let b = image(&store, "b", None);
    store.tag(a.as_str(), "v1").unwrap();
    store.tag("v1", "latest").unwrap();
    assert_eq!(
        tags_in_file(dir.path()),
        vec![
            ("latest".into(), a.to_string()),
            ("v1".into(), a.to_string())
        ]
    );
    store.tag(b.as_str(), "latest").unwrap();
    assert_eq!(store.resolve("latest").unwrap(), b);
    assert_eq!(
        tags_in_file(dir.path()),
        vec![
            ("latest".into(), b.to_string()),
            ("v1".into(), a.to_string())
        ]
    );
    assert_eq!(store.untag("v1").unwrap(), a);
    assert_eq!(
        tags_in_file(dir.path()),
        vec![("latest".into(), b.to_string())]
    );
    assert!(matches!(store.untag("v1").unwrap_err(), Error::NotFound(_)));
    // index.json is replaced by rename; no temporary file is left beside it.
    let stray: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // Blobs cannot be tagged; bad names are refused without touching the file.
    let layer = put(&store, b"plain");
    let before = fs::read(dir.path().join("index.json")).unwrap();
    assert!(matches!(
        store.tag(layer.as_str(), "x").unwrap_err(),
        Error::NotAManifest { .. }
    ));
    assert!(matches!(
        store.tag(a.as_str(), "bad/").unwrap_err(),
        Error::InvalidTag { .. }
    ));
    assert!(matches!(
        store.tag("missing", "x").unwrap_err(),
        Error::NotFound(_)
    ));
    assert_eq!(fs::read(dir.path().join("index.json")).unwrap(), before);
}

#[test]
fn untagged_entries_from_other_tools_survive_tag_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let a = image(&store, "a", None);
    let b = image(&store, "b", None);
    drop(store);
    // Another tool lists `a` untagged, with fields of its own.
    let mut ix = index_json(dir.path());
    ix["manifests"] = json!([{
        "mediaType": MANIFEST, "digest": a.as_str(), "size": 1,
        "platform": {"architecture": "s390x", "os": "linux"},
        "annotations": {"vendor.note": "keep me"},
        "x-unknown": [1, 2, 3]
    }]);
    ix["annotations"] = json!({"top.level": "kept"});
    fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&ix).unwrap(),
    )
    .unwrap();
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    store.tag(b.as_str(), "b").unwrap();
    let ix = index_json(dir.path());
    let untagged: Vec<_> = ix["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["digest"] == a.as_str())
        .collect();
    assert_eq!(untagged.len(), 1);
    assert_eq!(untagged[0]["platform"]["architecture"], "s390x");
    assert_eq!(untagged[0]["annotations"]["vendor.note"], "keep me");
    assert_eq!(untagged[0]["x-unknown"], json!([1, 2, 3]));
    assert_eq!(ix["annotations"]["top.level"], "kept");
}

/// An index.json entry whose ref name the store does not take as a tag (outside the grammar) is
/// kept as it is, and listed untagged.
#[test]
fn a_ref_name_outside_the_grammar_is_kept_and_listed_untagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let a = image(&store, "a", None);
    store.tag(a.as_str(), "a").unwrap();
    drop(store);
    let mut ix = index_json(dir.path());
    ix["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": MANIFEST, "digest": a.as_str(), "size": 1,
        "annotations": {"org.opencontainers.image.ref.name": "gh(ost"}
    }));
    fs::write(
        dir.path().join("index.json"),
        serde_json::to_vec(&ix).unwrap(),
    )
    .unwrap();
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    let listed: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.tag, e.digest))
        .collect();
    assert_eq!(
        listed,
        vec![(Some("a".to_owned()), a.clone()), (None, a.clone())]
    );
    assert!(store.resolve("gh(ost").is_err());
    store.tag(a.as_str(), "b").unwrap();
    let names: Vec<_> = index_json(dir.path())["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        names.contains(&"gh(ost".to_owned()),
        "the entry is kept as it was: {names:?}"
    );
}

#[test]
fn index_json_edited_while_closed_is_reconciled_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    let a = image(&store, "a", None);
    let b = image(&store, "b", None);
    store.tag(a.as_str(), "keep").unwrap();
    store.tag(a.as_str(), "drop").unwrap();
    store.tag(a.as_str(), "move").unwrap();
    drop(store);

    // Another tool writes a new image straight into blobs/ and edits index.json.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_d = Digest::sha256(config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d.as_str(), "size": config.len()},
        "layers": []
    }))
    .unwrap();
    let foreign = Digest::sha256(&manifest);
    fs::write(root.join(config_d.blob_path()), config).unwrap();
    fs::write(root.join(foreign.blob_path()), &manifest).unwrap();
    let mut ix = index_json(root);
    let entries = ix["manifests"].as_array_mut().unwrap();
    entries.retain(|e| e["annotations"]["org.opencontainers.image.ref.name"] != "drop");
    for e in entries.iter_mut() {
        if e["annotations"]["org.opencontainers.image.ref.name"] == "move" {
            e["digest"] = json!(b.as_str());
        }
    }
    entries.push(
        json!({"mediaType": MANIFEST, "digest": foreign.as_str(), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "added"}}),
    );
    fs::write(
        root.join("index.json"),
        serde_json::to_vec_pretty(&ix).unwrap(),
    )
    .unwrap();

    let store = Store::open(root, &Options::default()).unwrap();
    let r = store.open_report().reconciled.clone().expect("a reconcile");
    assert_eq!(r.tags_added, vec!["added"]);
    assert_eq!(r.tags_removed, vec!["drop"]);
    assert_eq!(r.tags_moved, vec!["move"]);
    assert_eq!(store.resolve("keep").unwrap(), a);
    assert_eq!(store.resolve("move").unwrap(), b);
    assert_eq!(store.resolve("added").unwrap(), foreign);
    assert!(matches!(
        store.resolve("drop").unwrap_err(),
        Error::NotFound(_)
    ));
    // The foreign manifest and its config were indexed from the layout.
    assert_eq!(store.children(&foreign).unwrap(), vec![config_d.clone()]);
    assert!(store.blob_info(&config_d).unwrap().unwrap().verified);
    // The file was not rewritten by the reconcile: it is the other tool's file until the store
    // next changes a tag, and then both sides' changes are in it.
    store.tag(a.as_str(), "mine").unwrap();
    let tags = tags_in_file(root);
    for t in ["keep", "move", "added", "mine"] {
        assert!(
            tags.iter().any(|(n, _)| n == t),
            "{t} missing from {tags:?}"
        );
    }
    assert!(!tags.iter().any(|(n, _)| n == "drop"));
    // A second open has nothing to reconcile.
    drop(store);
    let store = Store::open(root, &Options::default()).unwrap();
    assert!(store.open_report().reconciled.is_none());
}

#[test]
fn index_json_edited_while_open_is_merged_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    let a = image(&store, "a", None);
    store.tag(a.as_str(), "one").unwrap();
    // Another tool adds a tag while the store is open.
    let mut ix = index_json(root);
    ix["manifests"].as_array_mut().unwrap().push(
        json!({"mediaType": MANIFEST, "digest": a.as_str(), "size": 1,
        "annotations": {"org.opencontainers.image.ref.name": "theirs"}}),
    );
    fs::write(root.join("index.json"), serde_json::to_vec(&ix).unwrap()).unwrap();
    store.tag(a.as_str(), "ours").unwrap();
    let names: Vec<String> = tags_in_file(root).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["one", "ours", "theirs"]);
    assert_eq!(store.resolve("theirs").unwrap(), a);
}

#[test]
fn a_batch_is_one_transaction_and_one_index_json_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    let ino = fs::metadata(root.join("index.json")).unwrap().ino();
    let mut batch = store.batch().unwrap();
    let mut digests = Vec::new();
    for i in 0..50 {
        let config = format!(r#"{{"n":{i}}}"#);
        let c = batch
            .put(&mut config.as_bytes(), &PutOptions::default())
            .unwrap();
        let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c.digest.as_str(), "size": c.size},
            "layers": []}))
        .unwrap();
        let m = batch.put(&mut &m[..], &PutOptions::default()).unwrap();
        batch.tag(m.digest.as_str(), &format!("t{i}")).unwrap();
        digests.push(m.digest);
    }
    // Nothing is visible before the commit: not in the index, not in index.json, not in blobs/.
    assert!(store.blob_info(&digests[0]).unwrap().is_none());
    assert_eq!(fs::metadata(root.join("index.json")).unwrap().ino(), ino);
    assert!(!root.join(digests[0].blob_path()).exists());
    batch.commit().unwrap();
    assert_eq!(tags_in_file(root).len(), 50);
    for (i, d) in digests.iter().enumerate() {
        assert_eq!(store.resolve(&format!("t{i}")).unwrap(), *d);
    }
    // A dropped batch leaves nothing.
    let stats = store.stats().unwrap();
    let mut batch = store.batch().unwrap();
    let p = batch
        .put(&mut &b"abandoned"[..], &PutOptions::default())
        .unwrap();
    drop(batch);
    assert_eq!(store.stats().unwrap(), stats);
    assert!(!root.join(p.digest.blob_path()).exists());
    assert!(files_under(&root.join(".ocistore/ingest")).is_empty());
}

#[test]
fn referrers_answer_with_the_spec_fields_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let subject = image(&store, "subject", None);
    let sig = image(&store, "sig", Some(&subject));
    let sig_of_sig = image(&store, "sig-of-sig", Some(&sig));
    let r = store
        .referrers(&subject, &ReferrersQuery::default())
        .unwrap();
    let body = serde_json::to_value(&r).unwrap();
    assert_eq!(body["schemaVersion"], 2);
    assert_eq!(body["mediaType"], INDEX);
    assert_eq!(body["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(body["manifests"][0]["digest"], sig.as_str());
    assert_eq!(
        body["manifests"][0]["artifactType"],
        "application/vnd.example.signature"
    );
    assert!(r.filters_applied.is_empty());
    let t = store
        .referrers(
            &subject,
            &ReferrersQuery {
                transitive: true,
                ..Default::default()
            },
        )
        .unwrap();
    let got: Vec<_> = t.manifests.iter().map(|m| m.digest.clone()).collect();
    assert_eq!(got, vec![sig.to_string(), sig_of_sig.to_string()]);
    let f = store
        .referrers(
            &subject,
            &ReferrersQuery {
                artifact_type: Some("application/other".into()),
                transitive: true,
            },
        )
        .unwrap();
    assert!(f.manifests.is_empty());
    assert_eq!(f.filters_applied, vec!["artifactType"]);
}

#[test]
fn rebuild_recreates_the_same_index_from_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    let a = image(&store, "a", None);
    let sig = image(&store, "sig", Some(&a));
    store.tag(a.as_str(), "a").unwrap();
    let stats = store.stats().unwrap();
    let list = store.list().unwrap();
    drop(store);
    let store = Store::rebuild(root, &Options::default()).unwrap();
    assert!(store.open_report().created_index);
    assert_eq!(store.stats().unwrap(), stats);
    assert_eq!(store.list().unwrap(), list);
    assert_eq!(
        store
            .referrers(&a, &ReferrersQuery::default())
            .unwrap()
            .manifests[0]
            .digest,
        sig.as_str()
    );
}

#[test]
fn one_store_is_shared_by_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
    let base = image(&store, "base", None);
    store.tag(base.as_str(), "base").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            let base = base.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    let d = image(&store, &format!("t{t}-{i}"), Some(&base));
                    store.tag(d.as_str(), &format!("t{t}-{i}")).unwrap();
                    // Reads run on snapshots while the others write.
                    assert_eq!(store.resolve("base").unwrap(), base);
                    assert!(
                        store
                            .referrers(&base, &ReferrersQuery::default())
                            .unwrap()
                            .manifests
                            .len()
                            > i
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        store
            .referrers(&base, &ReferrersQuery::default())
            .unwrap()
            .manifests
            .len(),
        80
    );
    assert_eq!(tags_in_file(dir.path()).len(), 81);
}

#[test]
fn a_clean_close_needs_no_recovery_and_a_crash_leftover_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    put(&store, b"x");
    drop(store);
    // What a killed writer leaves: a temporary file, and a published blob never indexed.
    fs::write(root.join(".ocistore/ingest/ingest-crashed"), b"partial").unwrap();
    let store = Store::open(root, &Options::default()).unwrap();
    assert!(!store.open_report().recovered);
    assert_eq!(store.open_report().removed_temp_files, 1);
    assert!(files_under(&root.join(".ocistore/ingest")).is_empty());
}

#[test]
fn referrers_are_listed_untagged_in_index_json_and_leave_with_their_subject() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    let img = image(&store, "img", None);
    store.tag(img.as_str(), "img").unwrap();
    let sig = image(&store, "sig", Some(&img));
    let ix = index_json(root);
    let entry = ix["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["digest"] == sig.as_str())
        .cloned();
    let entry = entry.expect("the referrer is listed in index.json");
    assert!(entry["annotations"]["org.opencontainers.image.ref.name"].is_null());
    assert_eq!(entry["artifactType"], "application/vnd.example.signature");
    // The entry is not a root: the referrer goes with its subject, and its entry with it.
    store.untag("img").unwrap();
    store.gc(&ocistore::gc::GcOptions::default()).unwrap();
    assert_eq!(index_json(root)["manifests"], json!([]));
    // And the store can be told not to list them.
    let opts = Options {
        list_referrers: false,
        ..Options::default()
    };
    let dir2 = tempfile::tempdir().unwrap();
    let store = Store::init(dir2.path(), &opts).unwrap();
    let img = image(&store, "img", None);
    image(&store, "sig", Some(&img));
    assert_eq!(index_json(dir2.path())["manifests"], json!([]));
}

#[test]
fn blobs_removed_or_added_by_another_tool_are_noticed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    let a = image(&store, "a", None);
    store.tag(a.as_str(), "a").unwrap();
    let loose = put(&store, b"a blob nothing references");
    drop(store);
    // Another tool's collector removes the unreferenced blob and writes one of its own.
    fs::remove_file(root.join(loose.blob_path())).unwrap();
    let theirs = Digest::sha256(b"their blob");
    fs::write(root.join(theirs.blob_path()), b"their blob").unwrap();
    let store = Store::open(root, &Options::default()).unwrap();
    assert_eq!(store.open_report().removed_outside, vec![loose.to_string()]);
    assert!(store.blob_info(&loose).unwrap().is_none());
    assert!(store.blob_info(&theirs).unwrap().unwrap().verified);
    assert_eq!(store.resolve("a").unwrap(), a);
    drop(store);
    // Nothing changed since: the next open does not walk.
    let store = Store::open(root, &Options::default()).unwrap();
    assert!(store.open_report().removed_outside.is_empty());
    assert_eq!(store.open_report().indexed_blobs, 0);
}
