//! `verify` and `verify --repair`: each kind of damage is found, repairs move bad content aside
//! and never delete it, and what cannot be repaired is reported.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use ocistore::verify::{ProblemKind, VerifyOptions, VerifyReport};
use ocistore::{Digest, Options, PutOptions, Store};
use serde_json::json;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

struct Image {
    manifest: Digest,
    config: Digest,
    layer: Digest,
    layer_bytes: Vec<u8>,
}

fn put(store: &Store, bytes: &[u8]) -> Digest {
    store
        .put(&mut &bytes[..], &PutOptions::default())
        .unwrap()
        .digest
}

/// A tagged image with one layer, and a signature whose subject is the image.
fn image(store: &Store, name: &str) -> Image {
    let layer_bytes = format!("layer of {name}").repeat(1000).into_bytes();
    let layer = put(store, &layer_bytes);
    let config = put(store, format!(r#"{{"name":"{name}"}}"#).as_bytes());
    let config_size = store.blob_info(&config).unwrap().unwrap().size;
    let doc = json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": config_size},
        "layers": [{"mediaType": LAYER, "digest": layer.as_str(), "size": layer_bytes.len()}]});
    let manifest = put(store, &serde_json::to_vec(&doc).unwrap());
    store.tag(manifest.as_str(), name).unwrap();
    let size = store.blob_info(&manifest).unwrap().unwrap().size;
    let sig = json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.as_str(), "size": config_size},
        "layers": [],
        "subject": {"mediaType": MANIFEST, "digest": manifest.as_str(), "size": size}});
    put(store, &serde_json::to_vec(&sig).unwrap());
    Image {
        manifest,
        config,
        layer,
        layer_bytes,
    }
}

fn verify(store: &Store, repair: bool) -> VerifyReport {
    store.verify(&VerifyOptions { repair }).unwrap()
}

fn kinds(r: &VerifyReport) -> Vec<(ProblemKind, bool)> {
    r.problems.iter().map(|p| (p.kind, p.repaired)).collect()
}

fn blob_path(root: &Path, d: &Digest) -> std::path::PathBuf {
    root.join("blobs")
        .join(d.algorithm_name())
        .join(d.encoded())
}

fn quarantined(root: &Path) -> Vec<(String, Vec<u8>)> {
    let dir = root.join(".ocistore").join("quarantine");
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .map(|e| {
            let e = e.unwrap();
            let bytes = fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_healthy_store_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let a = image(&store, "a");
    image(&store, "b");
    let r = verify(&store, false);
    assert!(r.ok, "{:?}", r.problems);
    assert!(r.problems.is_empty());
    // Per image: layer, config, manifest, signature.
    assert_eq!(r.blobs, 8);
    assert_eq!(r.manifests, 4);
    assert!(r.bytes > a.layer_bytes.len() as u64);
    assert_eq!(r.unverifiable, 0);
}

#[test]
fn a_corrupt_blob_is_reported_and_quarantined_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "a");
    let path = blob_path(dir.path(), &img.layer);
    let mut bad = img.layer_bytes.clone();
    bad[10] ^= 1;
    fs::write(&path, &bad).unwrap();

    let r = verify(&store, false);
    assert!(!r.ok);
    assert_eq!(kinds(&r), vec![(ProblemKind::Corrupt, false)]);
    assert_eq!(r.problems[0].subject, img.layer.as_str());
    assert!(
        r.problems[0].detail.contains("hashes to"),
        "{}",
        r.problems[0]
    );
    // Without --repair, nothing changes.
    assert_eq!(fs::read(&path).unwrap(), bad);
    assert!(quarantined(dir.path()).is_empty());

    let r = verify(&store, true);
    assert!(!r.ok, "the image now lacks its layer: {:?}", r.problems);
    assert_eq!(
        kinds(&r),
        vec![
            (ProblemKind::Corrupt, true),
            (ProblemKind::MissingChild, false)
        ]
    );
    assert_eq!(r.problems[1].subject, img.manifest.as_str());
    assert!(!path.exists());
    let q = quarantined(dir.path());
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].1, bad, "the corrupt bytes are kept");
    assert!(store.blob_info(&img.layer).unwrap().is_none());

    // Pushing the right content again heals the store.
    put(&store, &img.layer_bytes);
    let r = verify(&store, false);
    assert!(r.ok, "{:?}", r.problems);
}

#[test]
fn a_file_gone_behind_the_stores_back_is_forgotten_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "a");
    fs::remove_file(blob_path(dir.path(), &img.config)).unwrap();
    let r = verify(&store, false);
    let mut k = kinds(&r);
    k.sort();
    // The config is a child of the image and of its signature.
    assert_eq!(k[0], (ProblemKind::MissingFile, false), "{:?}", r.problems);
    assert!(store.blob_info(&img.config).unwrap().is_some());
    let r = verify(&store, true);
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::MissingFile && p.repaired)
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::MissingChild && !p.repaired)
    );
    assert!(store.blob_info(&img.config).unwrap().is_none());
    assert_eq!(store.resolve("a").unwrap(), img.manifest, "tags are kept");
}

#[test]
fn a_blob_written_by_another_tool_while_open_is_indexed_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    image(&store, "a");
    let bytes = b"written by another tool";
    let d = Digest::sha256(bytes);
    fs::write(blob_path(dir.path(), &d), bytes).unwrap();
    let r = verify(&store, false);
    assert_eq!(kinds(&r), vec![(ProblemKind::UnindexedFile, false)]);
    let r = verify(&store, true);
    assert!(r.ok, "{:?}", r.problems);
    assert_eq!(kinds(&r), vec![(ProblemKind::UnindexedFile, true)]);
    assert_eq!(
        store.blob_info(&d).unwrap().unwrap().size,
        bytes.len() as u64
    );
    assert!(verify(&store, false).ok);
}

#[test]
fn a_symlink_in_blobs_is_moved_aside_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    fs::write(&secret, b"not the store's").unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    image(&store, "a");
    let d = Digest::sha256(b"not the store's");
    let link = blob_path(dir.path(), &d);
    symlink(&secret, &link).unwrap();

    let r = verify(&store, false);
    assert_eq!(kinds(&r), vec![(ProblemKind::NotABlob, false)]);
    assert!(
        r.problems[0].detail.contains("symlink"),
        "{}",
        r.problems[0]
    );
    let r = verify(&store, true);
    assert!(r.ok, "{:?}", r.problems);
    assert!(fs::symlink_metadata(&link).is_err(), "moved out of blobs/");
    let q = dir.path().join(".ocistore").join("quarantine");
    let moved: Vec<_> = fs::read_dir(&q)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(moved.len(), 1);
    assert!(
        fs::symlink_metadata(&moved[0])
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&secret).unwrap(), b"not the store's");
}

#[test]
fn index_json_changed_while_open_is_reconciled_by_repair() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let a = image(&store, "a");
    image(&store, "b");
    // Another tool drops tag "b" from index.json while the store is open.
    let path = dir.path().join("index.json");
    let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    doc["manifests"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() != Some("b"));
    fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let r = verify(&store, false);
    assert_eq!(kinds(&r), vec![(ProblemKind::IndexJson, false)]);
    assert!(r.problems[0].detail.contains('b'), "{}", r.problems[0]);
    let r = verify(&store, true);
    assert!(r.ok, "{:?}", r.problems);
    assert!(
        store.resolve("b").is_err(),
        "the other tool's untag is taken in"
    );
    assert_eq!(store.resolve("a").unwrap(), a.manifest);
}

#[test]
fn a_foreign_layer_with_urls_may_be_absent() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let config = put(&store, b"{}");
    let absent = Digest::sha256(b"a foreign layer, never downloaded");
    let doc = json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.as_str(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                    "digest": absent.as_str(), "size": 33, "urls": ["https://example.com/layer"]}]});
    let m = put(&store, &serde_json::to_vec(&doc).unwrap());
    store.tag(m.as_str(), "win").unwrap();
    let r = verify(&store, false);
    assert!(r.ok, "{:?}", r.problems);
}

#[test]
fn the_cli_reports_json_and_exits_1_when_a_problem_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let img = {
        let store = Store::init(dir.path(), &Options::default()).unwrap();
        image(&store, "a")
    };
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ocistore"))
            .arg("--store")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--json", "verify"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"], json!([]));

    fs::write(blob_path(dir.path(), &img.layer), b"garbled").unwrap();
    let out = run(&["--json", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["kind"], "corrupt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = run(&["verify", "--repair"]);
    assert_eq!(out.status.code(), Some(1), "the image lacks its layer now");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("corrupt") && text.contains("(repaired)"),
        "{text}"
    );
    assert!(text.contains("missing-child"), "{text}");
    assert_eq!(quarantined(dir.path()).len(), 1);
}

#[test]
fn a_manifest_deleted_from_under_a_garbage_index_is_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let index_of = |img: &Image| {
        let size = store.blob_info(&img.manifest).unwrap().unwrap().size;
        let index = json!({"schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": MANIFEST, "digest": img.manifest.as_str(), "size": size}]});
        put(&store, &serde_json::to_vec(&index).unwrap())
    };
    // An index nothing roots lists the image; the image's tag goes, then the image, and the
    // index with it.
    let img = image(&store, "a");
    let index = index_of(&img);
    store.untag("a").unwrap();
    store
        .delete(
            img.manifest.as_str(),
            &ocistore::gc::DeleteOptions::default(),
        )
        .unwrap();
    assert!(store.blob_info(&index).unwrap().is_none());
    let r = verify(&store, false);
    assert!(r.ok, "{:?}", r.problems);
    // Rooted, an index left lacking its child (a forced delete) is damage.
    let img = image(&store, "b");
    let index = index_of(&img);
    store.tag(index.as_str(), "idx").unwrap();
    store
        .delete(
            img.manifest.as_str(),
            &ocistore::gc::DeleteOptions {
                force: true,
                dry_run: false,
            },
        )
        .unwrap();
    let r = verify(&store, false);
    assert_eq!(kinds(&r), vec![(ProblemKind::MissingChild, false)]);
    assert_eq!(r.problems[0].subject, index.as_str());
}
