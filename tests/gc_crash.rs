//! `kill -9` during collections: reopening the store loses nothing live, finishes the
//! interrupted unlinks, and a collection can run again.
//!
//! The child is this test binary run again with `--ignored --exact helper_collect_forever`.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use ocistore::gc::GcOptions;
use ocistore::{Digest, Options, PutOptions, Store};
use serde_json::json;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn put(store: &Store, bytes: &[u8]) -> (Digest, u64) {
    let p = store.put(&mut &bytes[..], &PutOptions::default()).unwrap();
    (p.digest, p.size)
}

/// Tagged images with signatures: everything the collector must keep.
fn build(store: &Store, n: usize) -> HashSet<Digest> {
    let mut live = HashSet::new();
    for i in 0..n {
        let layer = put(store, format!("layer {i}").as_bytes());
        let config = put(store, format!(r#"{{"i":{i}}}"#).as_bytes());
        let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0.as_str(), "size": config.1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0.as_str(), "size": layer.1}]}))
        .unwrap();
        let m = store.put(&mut &m[..], &PutOptions::default()).unwrap();
        store.tag(m.digest.as_str(), &format!("img{i}")).unwrap();
        let sig = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "artifactType": "application/vnd.example.sig",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0.as_str(), "size": config.1},
            "layers": [],
            "subject": {"mediaType": MANIFEST, "digest": m.digest.as_str(), "size": m.size}}))
        .unwrap();
        let sig = store.put(&mut &sig[..], &PutOptions::default()).unwrap();
        live.extend([layer.0, config.0, m.digest, sig.digest]);
    }
    live
}

/// Child: makes garbage and collects it, forever (until killed).
#[test]
#[ignore = "helper process for kill_9_during_collections_loses_nothing_live"]
fn helper_collect_forever() {
    let Ok(dir) = std::env::var("OCISTORE_TEST_STORE") else {
        return;
    };
    let store = Store::open(&dir, &Options::default()).unwrap();
    let mut round = 0u64;
    loop {
        let mut b = store.batch().unwrap();
        for i in 0..300 {
            let g = format!("garbage {} {round} {i}", std::process::id());
            b.put(&mut g.as_bytes(), &PutOptions::default()).unwrap();
        }
        b.commit().unwrap();
        // Small chunks: many commit-then-unlink steps for the kill to land between.
        store
            .gc(&GcOptions {
                chunk: 64,
                ..Default::default()
            })
            .unwrap();
        round += 1;
    }
}

fn kills() -> usize {
    std::env::var("OCISTORE_GC_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

#[test]
fn kill_9_during_collections_loses_nothing_live() {
    let dir = tempfile::tempdir().unwrap();
    let live = {
        let store = Store::init(dir.path(), &Options::default()).unwrap();
        build(&store, 60)
    };
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut finished_unlinks = 0;
    for k in 0..kills() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "helper_collect_forever",
                "--test-threads=1",
            ])
            .env("OCISTORE_TEST_STORE", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let store = Store::open(dir.path(), &Options::default()).unwrap();
        let report = store.open_report();
        finished_unlinks += report.finished_unlinks;
        for d in &live {
            assert!(
                store.blob_info(d).unwrap().is_some(),
                "kill {k}: {d} lost from the index"
            );
            assert_eq!(
                store.read_all(d).unwrap().len() as u64,
                store.blob_info(d).unwrap().unwrap().size
            );
        }
        for i in 0..60 {
            store.resolve(&format!("img{i}")).unwrap();
        }
        // Nothing pending is left after the open, and a collection runs again. What the killed
        // writer had published but not committed is found by recovery and, like any orphan file,
        // kept for the grace period: with grace 0 it goes now.
        let r = store
            .gc(&GcOptions {
                grace: Duration::ZERO,
                ..Default::default()
            })
            .unwrap();
        assert!(
            r.removed
                .iter()
                .all(|x| !live.contains(&x.digest.parse::<Digest>().unwrap()))
        );
        // After it, the index and the layout agree: every indexed blob has its file, and the
        // orphan walk (due after the crash) left no unknown file behind.
        let stats = store.stats().unwrap();
        let files = std::fs::read_dir(dir.path().join("blobs/sha256"))
            .unwrap()
            .count() as u64;
        assert_eq!(stats.blobs, files, "kill {k}: index and blobs/ disagree");
        assert_eq!(
            stats.blobs as usize,
            live.len(),
            "kill {k}: garbage left after a full collection"
        );
        let ingest = std::fs::read_dir(dir.path().join(".ocistore/ingest"))
            .unwrap()
            .count();
        assert_eq!(ingest, 0, "kill {k}: temporary files left");
    }
    eprintln!(
        "survived {} kills; {finished_unlinks} interrupted unlinks finished on reopen",
        kills()
    );
}
