//! Deletion and garbage collection: the semantics in the README, against real stores.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ocistore::gc::{DeleteOptions, GcOptions, Mode, Policy, Strategy};
use ocistore::refname::LinkKind;
use ocistore::verify::VerifyOptions;
use ocistore::{Digest, Entry, Error, Options, PutOptions, ReferrerTag, Store};
use serde_json::json;

mod common;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";

fn blob(store: &Store, bytes: &[u8]) -> (Digest, u64) {
    let p = store.put(&mut &bytes[..], &PutOptions::default()).unwrap();
    (p.digest, p.size)
}

fn manifest(store: &Store, doc: serde_json::Value) -> Digest {
    let bytes = serde_json::to_vec(&doc).unwrap();
    let mt = doc["mediaType"].as_str().unwrap().to_owned();
    store
        .put(
            &mut &bytes[..],
            &PutOptions {
                media_type: Some(mt),
                ..Default::default()
            },
        )
        .unwrap()
        .digest
}

fn desc(mt: &str, d: &(Digest, u64)) -> serde_json::Value {
    json!({"mediaType": mt, "digest": d.0.as_str(), "size": d.1})
}

/// An image over the given layer contents (shared contents give shared blobs).
fn image(store: &Store, name: &str, layers: &[&str]) -> Digest {
    let config = blob(store, format!(r#"{{"image":"{name}"}}"#).as_bytes());
    let layers: Vec<_> = layers
        .iter()
        .map(|l| {
            desc(
                "application/vnd.oci.image.layer.v1.tar",
                &blob(store, l.as_bytes()),
            )
        })
        .collect();
    manifest(
        store,
        json!({"schemaVersion": 2, "mediaType": MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", &config), "layers": layers}),
    )
}

fn size_of(store: &Store, d: &Digest) -> u64 {
    store.blob_info(d).unwrap().unwrap().size
}

/// An artifact with a payload, linked to `subject` by its subject field when `with_subject`.
fn artifact(store: &Store, artifact_type: &str, payload: &str, subject: Option<&Digest>) -> Digest {
    let empty = blob(store, b"{}");
    let layer = blob(store, payload.as_bytes());
    let mut doc = json!({"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": artifact_type,
        "config": desc("application/vnd.oci.empty.v1+json", &empty),
        "layers": [desc("application/octet-stream", &layer)]});
    if let Some(s) = subject {
        doc["subject"] =
            json!({"mediaType": MANIFEST, "digest": s.as_str(), "size": size_of(store, s).max(1)});
    }
    manifest(store, doc)
}

fn index_of(store: &Store, members: &[&Digest]) -> Digest {
    let manifests: Vec<_> = members
        .iter()
        .map(|d| json!({"mediaType": MANIFEST, "digest": d.as_str(), "size": size_of(store, d)}))
        .collect();
    manifest(
        store,
        json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}),
    )
}

/// A fallback index of `subject` listing `members`, tagged `<alg>-<hex>` after the subject.
/// A signature whose `subject` names `subject`, which the store does not hold.
fn signature_of_absent(store: &Store, payload: &str, subject: &Digest) -> Digest {
    let empty = blob(store, b"{}");
    let layer = blob(store, payload.as_bytes());
    manifest(
        store,
        json!({"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": SIG,
        "config": desc("application/vnd.oci.empty.v1+json", &empty),
        "layers": [desc("application/octet-stream", &layer)],
        "subject": {"mediaType": MANIFEST, "digest": subject.as_str(), "size": 10}}),
    )
}

fn fallback_of(store: &Store, subject: &Digest, members: &[&Digest]) -> Digest {
    let fallback = index_of(store, members);
    store
        .tag(
            fallback.as_str(),
            &ReferrerTag::name(subject, LinkKind::Fallback),
        )
        .unwrap();
    fallback
}

fn present(store: &Store, root: &Path, d: &Digest) -> bool {
    let indexed = store.blob_info(d).unwrap().is_some();
    let file = root.join(d.blob_path()).exists();
    assert_eq!(indexed, file, "index and layout disagree about {d}");
    indexed
}

fn gc(store: &Store) -> ocistore::gc::GcReport {
    store.gc(&GcOptions::default()).unwrap()
}

fn all_blobs(store: &Store, roots: &[&Digest]) -> HashSet<Digest> {
    let mut out = HashSet::new();
    let mut stack: Vec<Digest> = roots.iter().map(|d| (*d).clone()).collect();
    while let Some(d) = stack.pop() {
        if out.insert(d.clone()) {
            stack.extend(store.children(&d).unwrap());
        }
    }
    out
}

/// The three link kinds, one store each: deleting the image takes its signature, its SBOM and
/// the SBOM's signature with it, and the next collection their blobs.
#[test]
fn deleting_an_image_takes_its_referrers_for_every_link_kind() {
    for kind in ["subject", "cosign-tag", "fallback-index"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let store = Store::init(root, &Options::default()).unwrap();
        let keep = image(&store, "keep", &["shared", "keep-only"]);
        store.tag(keep.as_str(), "keep").unwrap();
        let img = image(&store, "img", &["shared", "img-only"]);
        store.tag(img.as_str(), "img").unwrap();
        let (sig, sbom, sbom_sig) = match kind {
            "subject" => {
                let sig = artifact(&store, SIG, "sig", Some(&img));
                let sbom = artifact(&store, SBOM, "sbom", Some(&img));
                let sbom_sig = artifact(&store, SIG, "sbom-sig", Some(&sbom));
                (sig, sbom, sbom_sig)
            }
            "cosign-tag" => {
                let sig = artifact(&store, SIG, "sig", None);
                store
                    .tag(sig.as_str(), &ReferrerTag::name(&img, LinkKind::CosignSig))
                    .unwrap();
                let sbom = artifact(&store, SBOM, "sbom", None);
                store
                    .tag(
                        sbom.as_str(),
                        &ReferrerTag::name(&img, LinkKind::CosignSbom),
                    )
                    .unwrap();
                let sbom_sig = artifact(&store, SIG, "sbom-sig", None);
                store
                    .tag(
                        sbom_sig.as_str(),
                        &ReferrerTag::name(&sbom, LinkKind::CosignSig),
                    )
                    .unwrap();
                (sig, sbom, sbom_sig)
            }
            _ => {
                let sig = artifact(&store, SIG, "sig", None);
                let sbom = artifact(&store, SBOM, "sbom", None);
                fallback_of(&store, &img, &[&sig, &sbom]);
                let sbom_sig = artifact(&store, SIG, "sbom-sig", None);
                fallback_of(&store, &sbom, &[&sbom_sig]);
                (sig, sbom, sbom_sig)
            }
        };
        let refs = store
            .referrers(
                &img,
                &ocistore::ReferrersQuery {
                    transitive: true,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(refs.manifests.len(), 3, "{kind}");
        let doomed = all_blobs(&store, &[&img, &sig, &sbom, &sbom_sig]);
        let kept = all_blobs(&store, &[&keep]);
        // Nothing is garbage while the image is tagged.
        assert_eq!(gc(&store).removed_blobs, 0, "{kind}");

        // Deleting the tag deletes only the tag.
        let r = store.delete("img", &DeleteOptions::default()).unwrap();
        assert_eq!((r.tags.len(), r.removed.len()), (1, 0));
        assert!(present(&store, root, &img));
        let r = store
            .delete(img.as_str(), &DeleteOptions::default())
            .unwrap();
        let removed: HashSet<_> = r.removed.iter().map(|x| x.digest.clone()).collect();
        for d in [&img, &sig, &sbom, &sbom_sig] {
            assert!(removed.contains(d.as_str()), "{kind}: delete kept {d}");
            assert!(!present(&store, root, d), "{kind}: {d} still present");
        }
        assert!(
            store
                .referrers(&img, &Default::default())
                .unwrap()
                .manifests
                .is_empty()
        );
        let tags: Vec<_> = store
            .list()
            .unwrap()
            .into_iter()
            .filter_map(|e| e.tag)
            .collect();
        assert_eq!(
            tags,
            vec!["keep"],
            "{kind}: link tags must go with their subject"
        );
        gc(&store);
        for d in doomed.difference(&kept) {
            assert!(
                !present(&store, root, d),
                "{kind}: {d} survived the collection"
            );
        }
        for d in &kept {
            assert!(
                present(&store, root, d),
                "{kind}: shared or kept content {d} was lost"
            );
        }
    }
}

#[test]
fn untagging_then_collecting_takes_referrers_too() {
    for strategy in [Strategy::MarkSweep, Strategy::Refcount, Strategy::Scan] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), &Options::default()).unwrap();
        let img = image(&store, "img", &["a"]);
        store.tag(img.as_str(), "img").unwrap();
        let sig = artifact(&store, SIG, "sig", Some(&img));
        let sbom = artifact(&store, SBOM, "sbom", None);
        store
            .tag(
                sbom.as_str(),
                &ReferrerTag::name(&img, LinkKind::CosignSbom),
            )
            .unwrap();
        let sbom_sig = artifact(&store, SIG, "sbom-sig", Some(&sbom));
        store.untag("img").unwrap();
        let r = store
            .gc(&GcOptions {
                strategy,
                ..Default::default()
            })
            .unwrap();
        for d in [&img, &sig, &sbom, &sbom_sig] {
            assert!(!present(&store, dir.path(), d), "{strategy:?} kept {d}");
        }
        assert_eq!(
            store.stats().unwrap().blobs,
            0,
            "{strategy:?}: {:?}",
            r.removed
        );
        assert!(
            store.list().unwrap().is_empty(),
            "{strategy:?}: the cosign tag must go"
        );
    }
}

/// A fallback index lives and dies with its image under every strategy, also after its image
/// became a referrer itself (refcount stops letting the index wait on it then: see
/// `Writer::waits_on`), and with collections after unrelated writes in between.
#[test]
fn a_fallback_index_goes_with_its_image_even_after_the_image_becomes_a_referrer() {
    for strategy in [Strategy::MarkSweep, Strategy::Refcount, Strategy::Scan] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), &Options::default()).unwrap();
        let opts = GcOptions {
            strategy,
            grace: Duration::ZERO,
            ..Default::default()
        };
        let img = image(&store, "img", &["a"]);
        store.tag(img.as_str(), "img").unwrap();
        let sig = artifact(&store, SIG, "sig", None);
        let fallback = fallback_of(&store, &img, &[&sig]);
        let everything = all_blobs(&store, &[&img, &fallback]);
        // A second image with its fallback index and signature, which goes first.
        let img2 = image(&store, "img2", &["c"]);
        store.tag(img2.as_str(), "img2").unwrap();
        let sig2 = artifact(&store, SIG, "sig2", None);
        let fallback2 = fallback_of(&store, &img2, &[&sig2]);
        let r = store.gc(&opts).unwrap();
        assert_eq!(r.removed_blobs, 0, "{strategy:?}: {:?}", r.removed);
        store.untag("img2").unwrap();
        let r = store.gc(&opts).unwrap();
        for d in [&img2, &fallback2, &sig2] {
            assert!(
                !present(&store, dir.path(), d),
                "{strategy:?} kept {d}: removed {:?}",
                r.removed
            );
        }
        for d in &everything {
            assert!(present(&store, dir.path(), d), "{strategy:?} lost {d}");
        }
        assert_eq!(store.list().unwrap().len(), 2, "{strategy:?}");

        // The image becomes the signature of another image: still live, through that one.
        let other = image(&store, "other", &["b"]);
        store.tag(other.as_str(), "other").unwrap();
        store
            .tag(
                img.as_str(),
                &ReferrerTag::name(&other, LinkKind::CosignSig),
            )
            .unwrap();
        store.untag("img").unwrap();
        let r = store.gc(&opts).unwrap();
        assert_eq!(r.removed_blobs, 0, "{strategy:?}: {:?}", r.removed);
        for d in &everything {
            assert!(present(&store, dir.path(), d), "{strategy:?} lost {d}");
        }

        // Without `other`, everything goes: the image as its referrer, the fallback index and
        // the signature it lists with the image.
        store.untag("other").unwrap();
        let r = store.gc(&opts).unwrap();
        assert_eq!(
            store.stats().unwrap().blobs,
            0,
            "{strategy:?} kept some of it: removed {:?}",
            r.removed
        );
        assert!(store.list().unwrap().is_empty(), "{strategy:?}");
    }
}

/// README: a tag on a hard referrer does not keep it (or its subject); under the soft policy
/// it keeps the referrer, never the subject.
#[test]
fn an_untagged_image_whose_signature_is_tagged() {
    for mode in [Mode::Hard, Mode::Soft] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::init(dir.path(), &Options::default()).unwrap();
        let img = image(&store, "img", &["a"]);
        let sig = artifact(&store, SIG, "sig", Some(&img));
        store.tag(sig.as_str(), "signature").unwrap();
        let mut policy = Policy::default();
        policy.artifact_types.insert(SIG.into(), mode);
        let opts = GcOptions {
            policy: Some(policy),
            ..Default::default()
        };
        let dry = store
            .gc(&GcOptions {
                dry_run: true,
                ..opts.clone()
            })
            .unwrap();
        let reasons: Vec<_> = dry
            .removed
            .iter()
            .filter(|r| r.digest == sig.as_str())
            .map(|r| r.reason.clone())
            .collect();
        store.gc(&opts).unwrap();
        assert!(
            !present(&store, dir.path(), &img),
            "{mode:?}: the untagged image is not a root"
        );
        match mode {
            Mode::Hard => {
                assert!(!present(&store, dir.path(), &sig));
                assert!(reasons[0].contains("referrer of"), "{reasons:?}");
                assert!(store.list().unwrap().is_empty());
            }
            Mode::Soft => {
                assert!(present(&store, dir.path(), &sig));
                assert_eq!(store.resolve("signature").unwrap(), sig);
            }
        }
    }
}

/// The three strategies report the same removals, with the same sizes and reasons: a referrer
/// of garbage, a dangling referrer past the grace, a dropped untagged entry, plain garbage.
#[test]
fn every_strategy_reports_the_same_sizes_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "img", &["a", "b"]);
    artifact(&store, SIG, "sig of img", Some(&img));
    let absent = Digest::sha256(b"an image that never arrived");
    signature_of_absent(&store, "dangling payload", &absent);
    let entry = image(&store, "entry", &["c"]);
    let mut b = store.batch().unwrap();
    b.add_entry(&Entry::new(&entry, MANIFEST, size_of(&store, &entry), None))
        .unwrap();
    b.commit().unwrap();
    let kept = image(&store, "kept", &["d"]);
    store.tag(kept.as_str(), "kept").unwrap();
    let report = |strategy| {
        let mut removed = store
            .gc(&GcOptions {
                strategy,
                dry_run: true,
                delete_untagged: true,
                grace: Duration::ZERO,
                ..Default::default()
            })
            .unwrap()
            .removed;
        removed.sort_by(|a, b| a.digest.cmp(&b.digest));
        removed
    };
    let mark_sweep = report(Strategy::MarkSweep);
    let reasons: BTreeSet<&str> = mark_sweep.iter().map(|r| r.reason.as_str()).collect();
    for kind in [
        "referrer of",
        "dangling referrer",
        "untagged index.json entry",
        "unreachable",
    ] {
        assert!(
            reasons.iter().any(|r| r.starts_with(kind)),
            "no {kind:?} among {reasons:?}"
        );
    }
    assert!(mark_sweep.iter().all(|r| r.size > 0));
    for strategy in [Strategy::Refcount, Strategy::Scan] {
        assert_eq!(report(strategy), mark_sweep, "{strategy:?}");
    }
}

#[test]
fn a_referrer_pushed_before_its_subject_survives_the_grace_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let future = Digest::sha256(b"an image that has not arrived yet");
    let sig = artifact(&store, SIG, "early", None);
    // Re-push with a subject field naming the absent image.
    let early = signature_of_absent(&store, "early payload", &future);
    let r = gc(&store);
    assert!(
        present(&store, dir.path(), &early),
        "inside the grace period it stays"
    );
    assert!(
        !present(&store, dir.path(), &sig),
        "an unlinked, untagged artifact is plain garbage"
    );
    assert_eq!(
        store
            .explain(&early, &GcOptions::default())
            .unwrap()
            .path
            .len(),
        1
    );
    assert!(r.removed.iter().all(|x| x.digest != early.as_str()));
    let r = store
        .gc(&GcOptions {
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert!(
        !present(&store, dir.path(), &early),
        "after the grace period it goes"
    );
    assert!(
        r.removed
            .iter()
            .any(|x| x.digest == early.as_str() && x.reason.contains("dangling"))
    );
}

#[test]
fn a_platform_manifest_in_a_live_index_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let amd = image(&store, "amd64", &["a"]);
    let arm = image(&store, "arm64", &["b"]);
    let idx = index_of(&store, &[&amd, &arm]);
    store.tag(idx.as_str(), "multi").unwrap();
    let before = fs::read(dir.path().join("index.json")).unwrap();
    let err = store
        .delete(amd.as_str(), &DeleteOptions::default())
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(err.to_string().contains(idx.as_str()), "{err}");
    assert!(present(&store, dir.path(), &amd));
    let dry = store
        .delete(
            amd.as_str(),
            &DeleteOptions {
                dry_run: true,
                force: true,
            },
        )
        .unwrap();
    assert_eq!(dry.removed.len(), 1);
    assert!(present(&store, dir.path(), &amd));
    assert_eq!(fs::read(dir.path().join("index.json")).unwrap(), before);
    store
        .delete(
            amd.as_str(),
            &DeleteOptions {
                force: true,
                dry_run: false,
            },
        )
        .unwrap();
    assert!(!present(&store, dir.path(), &amd));
    assert!(present(&store, dir.path(), &arm));
    // A blob a manifest references is refused, even with the manifest unrooted.
    let layer = store.children(&arm).unwrap().pop().unwrap();
    let err = store
        .delete(
            layer.as_str(),
            &DeleteOptions {
                force: true,
                dry_run: false,
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::Refused { .. }), "{err}");
}

/// An index that is garbage goes with a platform manifest deleted from it: left lacking a child,
/// a tag would bring it back incomplete.
#[test]
fn deleting_a_platform_manifest_of_a_garbage_index_takes_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let amd = image(&store, "amd64", &["a"]);
    let arm = image(&store, "arm64", &["b"]);
    let inner = index_of(&store, &[&amd, &arm]);
    let outer = index_of(&store, &[&inner]);
    let report = store
        .delete(amd.as_str(), &DeleteOptions::default())
        .unwrap();
    let mut removed: Vec<&str> = report.removed.iter().map(|r| r.digest.as_str()).collect();
    removed.sort_unstable();
    let mut expected = vec![amd.as_str(), inner.as_str(), outer.as_str()];
    expected.sort_unstable();
    assert_eq!(removed, expected, "{:?}", report.removed);
    for d in [&amd, &inner, &outer] {
        assert!(!present(&store, dir.path(), d), "{d} is still there");
    }
    assert!(present(&store, dir.path(), &arm));
    let err = store.tag(inner.as_str(), "revived").unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(store.verify(&Default::default()).unwrap().ok);
}

#[test]
fn content_shared_by_two_images_survives_deleting_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let a = image(&store, "a", &["base layer", "a layer"]);
    let b = image(&store, "b", &["base layer", "b layer"]);
    store.tag(a.as_str(), "a").unwrap();
    store.tag(b.as_str(), "b").unwrap();
    let b_blobs = all_blobs(&store, &[&b]);
    store.delete("a", &DeleteOptions::default()).unwrap();
    store.delete(a.as_str(), &DeleteOptions::default()).unwrap();
    let r = gc(&store);
    assert_eq!(
        r.removed_blobs, 2,
        "a's config and its own layer: {:?}",
        r.removed
    );
    for d in &b_blobs {
        assert!(present(&store, dir.path(), d));
    }
}

#[test]
fn untagged_entries_are_roots_unless_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "img", &["a"]);
    let mut b = store.batch().unwrap();
    b.add_entry(&Entry::new(&img, MANIFEST, size_of(&store, &img), None))
        .unwrap();
    b.commit().unwrap();
    assert_eq!(gc(&store).removed_blobs, 0);
    let r = store
        .gc(&GcOptions {
            delete_untagged: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.removed_blobs, 3);
    assert!(r.index_json_rewritten);
    let ix: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(ix["manifests"], json!([]));
}

#[test]
fn pins_and_leases_are_roots() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let pinned = image(&store, "pinned", &["p"]);
    store.pin(&pinned).unwrap();
    let lease = store.lease();
    let leased = lease
        .put(
            &mut &b"a blob of an unfinished push"[..],
            &PutOptions::default(),
        )
        .unwrap()
        .digest;
    let r = gc(&store);
    assert_eq!(r.removed_blobs, 0, "{:?}", r.removed);
    drop(lease);
    store.unpin(&pinned).unwrap();
    gc(&store);
    assert!(!present(&store, dir.path(), &pinned));
    assert!(!present(&store, dir.path(), &leased));
}

/// An index of an older schema (version 6 keyed its tables by the digest's text) is rebuilt
/// from the layout on the next open, and its pins, which the layout does not hold, come along.
/// (A pinned manifest is also listed in index.json, so the pin of a plain blob is the test.)
#[test]
fn pins_survive_the_rebuild_of_an_index_of_an_older_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let pinned = blob(&store, b"a pinned blob").0;
    let other = blob(&store, b"another blob").0;
    store.pin(&pinned).unwrap();
    drop(store);
    {
        let db = redb::Database::open(dir.path().join(".ocistore/index.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        let text_pins = redb::TableDefinition::<&str, u64>::new("pins");
        assert!(txn.delete_table(text_pins).unwrap());
        txn.open_table(text_pins)
            .unwrap()
            .insert(pinned.as_str(), 1)
            .unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap()
            .insert("schema", 6u64.to_le_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path(), &Options::default()).unwrap();
    assert!(store.open_report().created_index);
    let r = gc(&store);
    assert_eq!(r.removed_blobs, 1, "{:?}", r.removed);
    assert!(present(&store, dir.path(), &pinned));
    assert!(!present(&store, dir.path(), &other));
}

/// The sweep removes garbage in key order, so a garbage manifest can lose a child before it
/// goes itself. Until the collection ends, a write that would make such a
/// manifest reachable again (a tag, a pin, an index listing it) is refused; once the missing
/// content is pushed again, it goes through, and the image is whole after the collection.
#[test]
fn a_manifest_that_lost_content_to_a_running_sweep_is_not_made_reachable() {
    // Scenarios: the first removal is a child of the image, or of its signature.
    for want_referrer in [false, true] {
        let mut checked = false;
        for variant in 0..200 {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
            let layer = format!("layer {variant}");
            let m = image(&store, &format!("{variant}"), &[&layer]);
            let sig = artifact(&store, SIG, &format!("signature {variant}"), Some(&m));
            let children = store.children(&m).unwrap();
            let sig_children = store.children(&sig).unwrap();
            let mut garbage: Vec<Digest> = all_blobs(&store, &[&m, &sig]).into_iter().collect();
            garbage.sort();
            let first = garbage[0].clone();
            let fits = if want_referrer {
                sig_children.contains(&first) && !children.contains(&first)
            } else {
                children.contains(&first)
            };
            if !fits {
                continue;
            }
            let content = store.read_all(&first).unwrap();
            let calls = Arc::new(Mutex::new(0));
            {
                let (store2, calls, m, first) = (
                    Arc::clone(&store),
                    Arc::clone(&calls),
                    m.clone(),
                    first.clone(),
                );
                store.set_sweep_hook(Some(Arc::new(move |removed: &[String]| {
                    let mut n = calls.lock().unwrap();
                    *n += 1;
                    if *n > 1 {
                        return;
                    }
                    assert_eq!(removed, [first.to_string()]);
                    let refused = |r: Result<(), Error>, root: &str, what: &str| match r {
                        Err(Error::BeingCollected { digest, gone }) => {
                            assert_eq!(digest, root, "{what}");
                            assert_eq!(gone, first.as_str(), "{what}");
                        }
                        other => panic!("{what}: {other:?}"),
                    };
                    refused(
                        store2.tag(m.as_str(), "again").map(|_| ()),
                        m.as_str(),
                        "tag",
                    );
                    refused(store2.pin(&m).map(|_| ()), m.as_str(), "pin");
                    let index = serde_json::to_vec(&json!({"schemaVersion": 2,
                        "mediaType": INDEX,
                        "manifests": [desc(MANIFEST, &(m.clone(), size_of(&store2, &m)))]}))
                    .unwrap();
                    let opts = PutOptions {
                        media_type: Some(INDEX.into()),
                        ..Default::default()
                    };
                    let index_digest = Digest::sha256(&index);
                    refused(
                        store2.put(&mut &index[..], &opts).map(|_| ()),
                        index_digest.as_str(),
                        "index",
                    );
                    assert!(store2.blob_info(&index_digest).unwrap().is_none());
                    assert!(store2.resolve("again").is_err(), "a refused tag stays out");
                    // Pushed again, the missing content makes the image whole: now it can be
                    // tagged.
                    let p = store2
                        .put(&mut &content[..], &PutOptions::default())
                        .unwrap();
                    assert_eq!(p.digest, first);
                    assert!(!p.existed);
                    store2.tag(m.as_str(), "again").unwrap();
                })));
            }
            let r = store
                .gc(&GcOptions {
                    chunk: 1,
                    ..GcOptions::default()
                })
                .unwrap();
            store.set_sweep_hook(None);
            assert!(*calls.lock().unwrap() >= 1, "{r:?}");
            assert_eq!(r.removed_blobs, 1, "only the first removal happened: {r:?}");
            assert_eq!(store.resolve("again").unwrap(), m);
            for d in all_blobs(&store, &[&m, &sig]) {
                assert!(present(&store, dir.path(), &d), "{d} was lost");
            }
            assert!(
                store
                    .referrers(&m, &Default::default())
                    .unwrap()
                    .manifests
                    .iter()
                    .any(|x| x.digest == sig.as_str())
            );
            checked = true;
            break;
        }
        assert!(checked, "no variant put the wanted digest first");
    }
}

/// The removal of the garbage's tags leaves the counts of the digests they name to the sweep,
/// which drops them with those digests. One that another writer deletes meanwhile, before the
/// sweep reaches it (here a signature its cosign tag supported), keeps no count: the store
/// verifies clean after the collection.
#[test]
fn garbage_deleted_by_another_writer_during_the_sweep_keeps_no_count() {
    let mut raced = 0;
    for variant in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
        let m = image(&store, &format!("racy {variant}"), &["a layer"]);
        store.tag(m.as_str(), "img").unwrap();
        let sig = artifact(&store, SIG, &format!("signature {variant}"), None);
        let cosign = format!("sha256-{}.sig", m.encoded());
        store.tag(sig.as_str(), &cosign).unwrap();
        store.untag("img").unwrap();
        let (called, deleted) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        {
            let (store2, sig) = (Arc::clone(&store), sig.clone());
            let (called, deleted) = (Arc::clone(&called), Arc::clone(&deleted));
            // After the first chunk: the signature goes now if that chunk did not take it.
            store.set_sweep_hook(Some(Arc::new(move |_: &[String]| {
                if !called.swap(true, Ordering::SeqCst) && store2.blob_info(&sig).unwrap().is_some()
                {
                    store2
                        .delete(sig.as_str(), &DeleteOptions::default())
                        .unwrap();
                    deleted.store(true, Ordering::SeqCst);
                }
            })));
        }
        store
            .gc(&GcOptions {
                chunk: 1,
                grace: Duration::ZERO,
                ..GcOptions::default()
            })
            .unwrap();
        store.set_sweep_hook(None);
        assert!(store.blob_info(&sig).unwrap().is_none());
        assert!(store.blob_info(&m).unwrap().is_none());
        let verified = store.verify(&VerifyOptions::default()).unwrap();
        assert!(verified.ok, "variant {variant}: {:?}", verified.problems);
        if deleted.load(Ordering::SeqCst) {
            raced += 1;
        }
    }
    assert!(raced > 0);
}

/// The race of distribution #2094: a digest the collection's commit removed, pushed again before
/// the sweeper unlinks it, must end up present and indexed. Driven with the sweep failpoint.
#[test]
fn a_blob_pushed_again_while_its_unlink_is_pending_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
    for round in 0..200 {
        let content = format!("round {round}");
        let d = blob(&store, content.as_bytes()).0;
        let pushed = Arc::new(AtomicBool::new(false));
        {
            let store2 = Arc::clone(&store);
            let pushed = Arc::clone(&pushed);
            let d = d.clone();
            store.set_sweep_hook(Some(Arc::new(move |removed: &[String]| {
                assert!(removed.contains(&d.to_string()));
                // The index no longer has it; the file is still there, its unlink pending.
                assert!(store2.blob_info(&d).unwrap().is_none());
                let p = store2
                    .put(
                        &mut content.as_bytes(),
                        &PutOptions {
                            digest: Some(d.clone()),
                            ..Default::default()
                        },
                    )
                    .unwrap();
                assert!(!p.existed);
                pushed.store(true, Ordering::SeqCst);
            })));
        }
        let r = gc(&store);
        assert!(pushed.load(Ordering::SeqCst));
        assert_eq!(r.removed_blobs, 1);
        store.set_sweep_hook(None);
        assert!(
            present(&store, dir.path(), &d),
            "round {round}: the re-pushed blob was lost"
        );
        assert_eq!(
            store.read_all(&d).unwrap(),
            format!("round {round}").as_bytes()
        );
        // Collect it for real before the next round.
        gc(&store);
        assert!(!present(&store, dir.path(), &d));
    }
}

/// The race one step later: the push comes while the unlink thread is removing the file (it
/// took the digest's pending mark under the stripe lock, and removes the name before releasing
/// it). The push must wait for that unlink, or the unlink would remove the file the push just
/// published.
#[test]
fn a_blob_pushed_again_while_its_unlink_is_under_way_wins() {
    use ocistore::fault::{self, Step};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
    for round in 0..20 {
        let content = format!("under way {round}");
        let d = blob(&store, content.as_bytes()).0;
        let pusher: Arc<Mutex<Option<std::thread::JoinHandle<()>>>> = Arc::default();
        let published_early = Arc::new(AtomicBool::new(false));
        let injector: fault::Injector = {
            let (store, pusher, early) = (
                Arc::clone(&store),
                Arc::clone(&pusher),
                Arc::clone(&published_early),
            );
            let (d, content) = (d.clone(), content.clone());
            Arc::new(move |step, path| {
                if step != Step::Unlink
                    || !path.ends_with(d.blob_path())
                    || pusher.lock().unwrap().is_some()
                {
                    return None;
                }
                let (store, d, content) = (Arc::clone(&store), d.clone(), content.clone());
                let done = Arc::new(AtomicBool::new(false));
                let done2 = Arc::clone(&done);
                *pusher.lock().unwrap() = Some(std::thread::spawn(move || {
                    let opts = PutOptions {
                        digest: Some(d),
                        ..Default::default()
                    };
                    store.put(&mut content.as_bytes(), &opts).unwrap();
                    done2.store(true, Ordering::SeqCst);
                }));
                // Time for the push to publish, were it not waiting for this unlink.
                std::thread::sleep(Duration::from_millis(50));
                early.store(done.load(Ordering::SeqCst), Ordering::SeqCst);
                None
            })
        };
        let installed = fault::install(dir.path(), injector);
        let r = gc(&store);
        drop(installed);
        assert_eq!(r.removed_blobs, 1);
        let pusher = pusher.lock().unwrap().take().expect("the unlink ran");
        pusher.join().unwrap();
        assert!(
            !published_early.load(Ordering::SeqCst),
            "round {round}: the push completed during the unlink"
        );
        assert!(
            present(&store, dir.path(), &d),
            "round {round}: the re-pushed blob was lost"
        );
        assert_eq!(store.read_all(&d).unwrap(), content.as_bytes());
        gc(&store);
        assert!(!present(&store, dir.path(), &d));
    }
}

/// The same race with real threads: pushers re-push garbage the collector is sweeping.
#[test]
fn pushes_racing_the_sweeper_are_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
    for round in 0..20 {
        let digests: Vec<_> = (0..50)
            .map(|i| blob(&store, format!("{round}/{i}").as_bytes()).0)
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let confirmed = Arc::new(Mutex::new(Vec::new()));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let pusher = {
            let (store, stop, confirmed) = (
                Arc::clone(&store),
                Arc::clone(&stop),
                Arc::clone(&confirmed),
            );
            let digests = digests.clone();
            std::thread::spawn(move || {
                let lease = store.lease();
                for (i, d) in digests.iter().enumerate().rev() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let content = format!("{round}/{i}");
                    lease
                        .put(
                            &mut content.as_bytes(),
                            &PutOptions {
                                digest: Some(d.clone()),
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    confirmed.lock().unwrap().push(d.clone());
                }
                done_tx.send(()).unwrap();
                // The push is unfinished until released: its lease protects what it wrote.
                release_rx.recv().unwrap();
            })
        };
        gc(&store);
        stop.store(true, Ordering::SeqCst);
        done_rx.recv().unwrap();
        gc(&store);
        for d in confirmed.lock().unwrap().iter() {
            assert!(
                present(&store, dir.path(), d),
                "round {round}: confirmed push of {d} lost"
            );
        }
        release_tx.send(()).unwrap();
        pusher.join().unwrap();
        gc(&store);
        for d in &digests {
            assert!(
                !present(&store, dir.path(), d),
                "round {round}: {d} outlived its lease"
            );
        }
    }
}

#[test]
fn gc_alongside_four_pushing_threads_loses_nothing() {
    let runs = std::env::var("OCISTORE_GC_RACE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for run in 0..runs {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
        // Garbage for the collector to chew on while the pushers go.
        for i in 0..100 {
            blob(&store, format!("garbage {run}/{i}").as_bytes());
        }
        let done = Arc::new(AtomicBool::new(false));
        let pushers: Vec<_> = (0..4)
            .map(|t| {
                let (store, done) = (Arc::clone(&store), Arc::clone(&done));
                std::thread::spawn(move || {
                    let mut pushed = Vec::new();
                    let mut i = 0;
                    while !done.load(Ordering::SeqCst) || i < 5 {
                        // A push made of several calls, under a lease until it is tagged.
                        let lease = store.lease();
                        let layer = lease.put(&mut format!("shared base {}", i % 3).as_bytes(), &PutOptions::default()).unwrap();
                        let config = lease.put(&mut format!("config {run}/{t}/{i}").as_bytes(), &PutOptions::default()).unwrap();
                        let m = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": MANIFEST,
                            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest.as_str(), "size": config.size},
                            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest.as_str(), "size": layer.size}]}))
                        .unwrap();
                        let m = lease.put(&mut &m[..], &PutOptions::default()).unwrap();
                        store.tag(m.digest.as_str(), &format!("t{t}-{i}")).unwrap();
                        drop(lease);
                        pushed.push((format!("t{t}-{i}"), m.digest, vec![layer.digest, config.digest]));
                        i += 1;
                    }
                    pushed
                })
            })
            .collect();
        for _ in 0..5 {
            gc(&store);
        }
        done.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for p in pushers {
            all.extend(p.join().unwrap());
        }
        gc(&store);
        for (tag, m, blobs) in &all {
            assert_eq!(&store.resolve(tag).unwrap(), m);
            assert!(
                present(&store, dir.path(), m),
                "run {run}: {tag} lost its manifest"
            );
            for b in blobs {
                assert!(present(&store, dir.path(), b), "run {run}: {tag} lost {b}");
            }
        }
        for i in 0..100 {
            let g = Digest::sha256(format!("garbage {run}/{i}").as_bytes());
            assert!(!present(&store, dir.path(), &g));
        }
    }
}

#[test]
fn explain_gives_the_path_from_a_root_or_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let amd = image(&store, "amd64", &["a"]);
    let idx = index_of(&store, &[&amd]);
    store.tag(idx.as_str(), "multi").unwrap();
    let sig = artifact(&store, SIG, "sig", Some(&amd));
    let sig_layer = store
        .children(&sig)
        .unwrap()
        .into_iter()
        .find(|c| c != &Digest::sha256(b"{}"))
        .unwrap();
    let e = store.explain(&sig_layer, &GcOptions::default()).unwrap();
    assert!(e.live);
    assert_eq!(e.path.len(), 4, "{:?}", e.path);
    assert!(e.path[0].starts_with("tag multi"));
    assert!(e.path[2].contains("<- referrer"));
    store.untag("multi").unwrap();
    let e = store.explain(&idx, &GcOptions::default()).unwrap();
    assert!(!e.live);
    assert_eq!(e.reason.as_deref(), Some("unreachable from any root"));
}

#[test]
fn a_collection_with_nothing_to_do_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "img", &["a"]);
    store.tag(img.as_str(), "img").unwrap();
    let ix = fs::metadata(dir.path().join("index.json")).unwrap();
    let r = gc(&store);
    assert_eq!(
        (r.removed_blobs, r.index_json_rewritten, r.orphan_walk),
        (0, false, false)
    );
    assert_eq!(r.kept_blobs, 3);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(dir.path().join("index.json")).unwrap().ino(),
        ix.ino()
    );
}

#[test]
fn orphan_files_and_stale_temp_files_go_when_a_walk_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let store = Store::init(root, &Options::default()).unwrap();
    let img = image(&store, "img", &["a"]);
    store.tag(img.as_str(), "img").unwrap();
    // Files the index does not know: an orphan blob (as a crashed writer or another tool
    // leaves them) and a dead writer's temporary file.
    let orphan = Digest::sha256(b"orphan");
    fs::write(root.join(orphan.blob_path()), b"orphan").unwrap();
    fs::write(root.join(".ocistore/ingest/ingest-999-1-dead"), b"partial").unwrap();
    // No walk is due: the orphan stays (the walk does not run on every collection).
    let r = gc(&store);
    assert!(!r.orphan_walk);
    assert!(root.join(orphan.blob_path()).exists());
    // On request, with the grace over, both go; live content stays.
    let r = store
        .gc(&GcOptions {
            scan_orphans: true,
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert!(r.orphan_walk);
    assert_eq!((r.orphan_files, r.temp_files), (1, 1));
    assert!(!root.join(orphan.blob_path()).exists());
    assert!(present(&store, root, &img));
    for c in store.children(&img).unwrap() {
        assert!(present(&store, root, &c));
    }
}

#[test]
fn a_collection_right_after_a_complete_one_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "img", &["a"]);
    store.tag(img.as_str(), "img").unwrap();
    blob(&store, b"garbage");
    for strategy in [Strategy::MarkSweep, Strategy::Refcount] {
        let opts = GcOptions {
            strategy,
            ..Default::default()
        };
        let first = store.gc(&opts).unwrap();
        assert!(!first.unchanged);
        let second = store.gc(&opts).unwrap();
        assert!(second.unchanged, "{strategy:?}");
        assert_eq!((second.removed_blobs, second.kept_blobs), (0, 3));
        // Any write ends it: here an untag makes the image garbage.
        store.tag(img.as_str(), "again").unwrap();
        assert!(!store.gc(&opts).unwrap().unchanged);
        // Other options are another question.
        assert!(store.gc(&opts).unwrap().unchanged);
        assert!(
            !store
                .gc(&GcOptions {
                    delete_untagged: true,
                    ..opts.clone()
                })
                .unwrap()
                .unchanged
        );
    }
    store.untag("img").unwrap();
    store.untag("again").unwrap();
    let r = gc(&store);
    assert!(!r.unchanged);
    assert_eq!(r.removed_blobs, 3);
    // A grace period that ends is a change without a write: a dangling referrer pushed now is
    // protected for 24 h, so the next collection may skip only until then.
    let subject = Digest::sha256(b"absent");
    let empty = blob(&store, b"{}");
    manifest(
        &store,
        json!({"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": SIG,
        "config": desc("application/vnd.oci.empty.v1+json", &empty), "layers": [],
        "subject": {"mediaType": MANIFEST, "digest": subject.as_str(), "size": 1}}),
    );
    assert_eq!(gc(&store).removed_blobs, 0);
    assert!(gc(&store).unchanged);
    let r = store
        .gc(&GcOptions {
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert!(!r.unchanged);
    assert_eq!(r.removed_blobs, 2);
}

/// Deleting an image takes its hard referrers, but not one that a live index lists: that
/// would leave the index lacking a child. The delete is refused, as for the image itself.
#[test]
fn a_delete_does_not_take_a_referrer_that_a_live_index_lists() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    let img = image(&store, "img", &["a"]);
    store.tag(img.as_str(), "img").unwrap();
    let sig = artifact(&store, SIG, "sig", Some(&img));
    let other = image(&store, "other", &["b"]);
    let index = index_of(&store, &[&other, &sig]);
    store.tag(index.as_str(), "bundle").unwrap();
    let err = store
        .delete(img.as_str(), &DeleteOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, Error::Refused { .. }),
        "expected a refusal, got {err}"
    );
    assert!(err.to_string().contains(index.as_str()), "{err}");
    for d in [&img, &sig, &index, &other] {
        assert!(
            present(&store, dir.path(), d),
            "the refused delete removed {d}"
        );
    }
    assert!(store.verify(&Default::default()).unwrap().ok);
    // --force takes the referrer anyway, as it would the image.
    let forced = DeleteOptions {
        force: true,
        ..Default::default()
    };
    store.delete(img.as_str(), &forced).unwrap();
    assert!(!present(&store, dir.path(), &sig));
}

/// The default strategy counts when few digests have lost their support since the last
/// collection (one candidate per 128 blobs at most), and marks when many have. Either way it
/// removes what mark-sweep finds.
#[test]
fn the_automatic_strategy_counts_for_a_few_candidates_and_marks_for_many() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path(), &Options::default()).unwrap();
    // 60 tagged images sharing two layers: 182 blobs.
    for i in 0..60 {
        let own = format!("own layer {i}");
        let img = image(&store, &format!("img{i}"), &["base", "common", &own]);
        store.tag(img.as_str(), &format!("t{i}")).unwrap();
    }
    let opts = GcOptions {
        grace: Duration::ZERO,
        ..Default::default()
    };
    assert_eq!(opts.strategy, Strategy::Auto);
    let digests = |r: &ocistore::gc::GcReport| -> BTreeSet<String> {
        r.removed.iter().map(|x| x.digest.clone()).collect()
    };
    let marked = |store: &Store| {
        let dry = GcOptions {
            strategy: Strategy::MarkSweep,
            dry_run: true,
            ..opts.clone()
        };
        digests(&store.gc(&dry).unwrap())
    };
    assert_eq!(store.gc(&opts).unwrap().removed_blobs, 0);

    // One untagged image: its manifest is the one candidate.
    store.untag("t0").unwrap();
    let expected = marked(&store);
    let r = store.gc(&opts).unwrap();
    assert_eq!(r.strategy, Strategy::Refcount);
    assert_eq!(r.removed_blobs, 3, "{:?}", r.removed);
    assert_eq!(digests(&r), expected);

    // Twenty: 20 candidates among 179 blobs.
    for i in 1..21 {
        store.untag(&format!("t{i}")).unwrap();
    }
    let expected = marked(&store);
    let r = store.gc(&opts).unwrap();
    assert_eq!(r.strategy, Strategy::MarkSweep);
    assert_eq!(r.removed_blobs, 60, "{:?}", r.removed);
    assert_eq!(digests(&r), expected);
    assert!(store.verify(&Default::default()).unwrap().ok);
}

/// At no commit of a collection does index.json name a removed blob or list one below a name:
/// the garbage's tags and entries go first. Checked at every chunk's commit, from the files, as
/// another tool reading the layout sees it.
#[test]
fn index_json_never_names_or_lists_a_removed_blob_during_a_collection() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = Arc::new(Store::init(&root, &Options::default()).unwrap());
    for i in 0..12 {
        // Named garbage once untagged: the image's referrers (an entry lists one, a cosign tag
        // names the other) and what they list.
        let m = image(
            &store,
            &format!("named {i}"),
            &[&format!("named layer {i}")],
        );
        store.tag(m.as_str(), &format!("v{i}")).unwrap();
        artifact(&store, SIG, &format!("listed signature {i}"), Some(&m));
        let sig = artifact(&store, SIG, &format!("cosign signature {i}"), None);
        let link = ReferrerTag::name(&m, LinkKind::CosignSig);
        store.tag(sig.as_str(), &link).unwrap();
        store.untag(&format!("v{i}")).unwrap();
        // Garbage no name reaches.
        image(
            &store,
            &format!("unnamed {i}"),
            &[&format!("unnamed layer {i}")],
        );
        blob(&store, format!("loose {i}").as_bytes());
    }
    let listed = |root: &Path| -> Vec<String> {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["digest"].as_str().unwrap().to_owned())
            .collect()
    };
    let garbage: BTreeSet<String> = store
        .gc(&GcOptions {
            dry_run: true,
            ..GcOptions::default()
        })
        .unwrap()
        .removed
        .into_iter()
        .map(|r| r.digest)
        .collect();
    // Per image 11 blobs, and the empty config every artifact shares.
    assert_eq!(garbage.len(), 12 * 11 + 1);
    let commits = Arc::new(Mutex::new(Vec::new()));
    {
        let (root, commits) = (root.clone(), Arc::clone(&commits));
        store.set_sweep_hook(Some(Arc::new(move |removed: &[String]| {
            // The hook runs after the commit and before these files are unlinked.
            let names = listed(&root);
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let reached = common::strong_closure(&root, &names);
            let bad: Vec<&String> = removed.iter().filter(|d| reached.contains(*d)).collect();
            commits.lock().unwrap().push((removed.len(), bad.len()));
        })));
    }
    let report = store
        .gc(&GcOptions {
            chunk: 8,
            ..GcOptions::default()
        })
        .unwrap();
    store.set_sweep_hook(None);
    let removed: BTreeSet<String> = report.removed.iter().map(|r| r.digest.clone()).collect();
    assert_eq!(removed, garbage);
    let sorted: Vec<&String> = report.removed.iter().map(|r| &r.digest).collect();
    assert!(sorted.is_sorted(), "the report lists removals in key order");
    let commits = commits.lock().unwrap();
    assert!(commits.len() > 1, "{commits:?}");
    assert_eq!(
        commits.iter().map(|&(n, _)| n).sum::<usize>(),
        garbage.len()
    );
    assert!(commits.iter().all(|&(_, bad)| bad == 0), "{commits:?}");
    assert!(!listed(&root).iter().any(|d| garbage.contains(d)));
    assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
}

/// Collections in one process run one at a time. A second collection that began while the
/// first was sweeping emptied the set of writes made since, so the first's next recheck missed
/// an image pushed over its garbage layer and removed the layer from under it. Here the second
/// collection starts from the first one's sweep, right after that image is pushed; the hook
/// gives it a few seconds, then lets the first go on.
#[test]
fn a_second_collection_does_not_hide_a_push_from_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::init(dir.path(), &Options::default()).unwrap());
    let old = image(&store, "old", &["shared"]);
    store.tag(old.as_str(), "old").unwrap();
    let layer = Digest::sha256(b"shared");
    // Garbage that goes before the layer in key order, so a chunk of one commits before it.
    let below: Vec<Digest> = (0..16)
        .map(|i| blob(&store, format!("garbage {i}").as_bytes()).0)
        .filter(|d| d.as_str() < layer.as_str())
        .collect();
    assert!(!below.is_empty());
    store.untag("old").unwrap();

    let fired = Arc::new(AtomicBool::new(false));
    let second = Arc::new(Mutex::new(None));
    {
        let (s, fired, second) = (Arc::clone(&store), Arc::clone(&fired), Arc::clone(&second));
        let layer = layer.clone();
        store.set_sweep_hook(Some(Arc::new(move |_: &[String]| {
            if fired.swap(true, Ordering::SeqCst) {
                return;
            }
            assert!(
                s.blob_info(&layer).unwrap().is_some(),
                "the layer went first"
            );
            let new = image(&s, "new", &["shared"]);
            s.tag(new.as_str(), "new").unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let other = Arc::clone(&s);
            *second.lock().unwrap() = Some(std::thread::spawn(move || {
                let r = other.gc(&GcOptions {
                    grace: Duration::ZERO,
                    ..GcOptions::default()
                });
                let _ = tx.send(());
                r
            }));
            // With collections one at a time, the second waits for this one to end.
            let _ = rx.recv_timeout(Duration::from_secs(3));
        })));
    }
    let first = store
        .gc(&GcOptions {
            grace: Duration::ZERO,
            chunk: 1,
            ..GcOptions::default()
        })
        .unwrap();
    let handle = second.lock().unwrap().take().expect("the hook ran");
    let other = handle.join().unwrap().unwrap();
    store.set_sweep_hook(None);
    assert!(
        first.removed.iter().all(|r| r.digest != layer.as_str()),
        "the first collection removed the layer of the image pushed during it"
    );
    assert!(other.removed.iter().all(|r| r.digest != layer.as_str()));
    assert!(present(&store, dir.path(), &layer));
    assert_eq!(store.read_all(&layer).unwrap(), b"shared");
    assert!(!present(&store, dir.path(), &old));
    assert!(store.verify(&VerifyOptions::default()).unwrap().ok);
}
