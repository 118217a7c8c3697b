//! `Store::import`: what an import of a foreign layout brings (the closure of the chosen entries,
//! every kind of referrer, the index.json entries that link them), and that a failed import
//! changes nothing.

mod common;
use common::copy_dir;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::*;
use ocistore::{Digest, Error, Options, PutOptions, ReferrerDescriptor, ReferrersQuery, Store};
use serde_json::Value;

fn referrers(store: &Store, subject: &Digest, query: &ReferrersQuery) -> Vec<ReferrerDescriptor> {
    let answer = store.referrers(subject, query).unwrap();
    assert_eq!(answer.schema_version, 2);
    assert_eq!(answer.media_type, OCI_INDEX);
    sorted(answer.manifests)
}

fn queries() -> Vec<ReferrersQuery> {
    let mut v = Vec::new();
    for transitive in [false, true] {
        for artifact_type in [
            None,
            Some(SBOM_TYPE),
            Some(SIGNATURE_TYPE),
            Some(NOTARY_TYPE),
            Some(OCI_CONFIG),
        ] {
            v.push(ReferrersQuery {
                artifact_type: artifact_type.map(str::to_owned),
                transitive,
            });
        }
    }
    v
}

/// The entries of an index.json, as a set of JSON objects.
fn entries(root: &Path) -> BTreeSet<String> {
    let doc: Value = serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

fn tags(store: &Store) -> BTreeSet<String> {
    store
        .list()
        .unwrap()
        .into_iter()
        .filter_map(|e| e.tag)
        .collect()
}

fn untagged(store: &Store) -> BTreeSet<String> {
    store
        .list()
        .unwrap()
        .into_iter()
        .filter(|e| e.tag.is_none())
        .map(|e| e.digest.to_string())
        .collect()
}

/// The image tagged "v1" and all its referrers, direct and transitive.
fn v1_roots(g: &Generated) -> Vec<&str> {
    digests([
        &g.image,
        &g.sbom,
        &g.sbom_signature,
        &g.artifact,
        &g.config_typed,
        &g.cosign_sig,
        &g.cosign_v3,
        &g.index_referrer,
    ])
}

fn digests<'a>(descs: impl IntoIterator<Item = &'a Desc>) -> Vec<&'a str> {
    descs.into_iter().map(|d| d.digest.as_str()).collect()
}

/// Asserts that every blob of `dst` is indexed, verified, and has the bytes of the source file.
fn assert_all_verified(store: &Store, src: &Path) {
    for d in blob_digests(store.root()) {
        let digest = Digest::parse(&d).unwrap();
        let info = store
            .blob_info(&digest)
            .unwrap()
            .unwrap_or_else(|| panic!("{d} is in blobs/ but not indexed"));
        assert!(info.verified, "{d} was imported without verification");
        assert_eq!(
            store.read_all(&digest).unwrap(),
            fs::read(src.join(digest.blob_path())).unwrap(),
            "{d}"
        );
    }
}

/// Everything that must not change when an import fails.
struct State {
    files: std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    stats: ocistore::Counts,
    list: Vec<ocistore::ListEntry>,
}

fn state(store: &Store) -> State {
    State {
        files: snapshot(store.root()),
        stats: store.stats().unwrap(),
        list: store.list().unwrap(),
    }
}

fn assert_unchanged(store: &Store, before: &State) {
    assert!(
        ingest_files(store.root()).is_empty(),
        "files left in ingest: {:?}",
        ingest_files(store.root())
    );
    assert_eq!(store.stats().unwrap(), before.stats);
    assert_eq!(store.list().unwrap(), before.list);
    let after = snapshot(store.root());
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.files.keys().collect::<Vec<_>>(),
        "files were added or removed"
    );
    assert!(after == before.files, "a file changed");
}

/// A store with one image of its own, tagged "own", so that "unchanged" means something.
fn store_with_content(root: &Path) -> Store {
    let store = Store::init(root, &Options::default()).unwrap();
    let config = store
        .put(&mut &br#"{"own":true}"#[..], &PutOptions::default())
        .unwrap();
    let m = manifest_json(
        descriptor(OCI_CONFIG, config.digest.as_str(), config.size),
        vec![],
        None,
        None,
        &[],
    );
    let image = store
        .put(
            &mut &m[..],
            &PutOptions {
                media_type: Some(OCI_MANIFEST.into()),
                ..PutOptions::default()
            },
        )
        .unwrap();
    store.tag(image.digest.as_str(), "own").unwrap();
    store
}

#[test]
fn import_all_brings_everything_and_answers_like_adoption() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let g = generate(&src);
    let src_before = snapshot(&src);

    // The reference: a copy of the same layout, adopted in place.
    let adopted_dir = tempfile::tempdir().unwrap();
    let adopted_root = adopted_dir.path().join("adopted");
    copy_dir(&src, &adopted_root);
    assert_eq!(snapshot(&adopted_root), src_before);
    let adopted = Store::init(&adopted_root, &Options::default()).unwrap();

    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Store::init(dst_dir.path(), &exact_entries()).unwrap();
    let report = dst.import(&src, &[]).unwrap();
    assert_eq!(snapshot(&src), src_before, "import changed its source");
    assert!(
        report.warnings.is_empty(),
        "warnings: {:?}",
        report.warnings
    );

    // Blobs: every file of the source except the referrer whose subject is absent (nothing
    // imported reaches it). The foreign layer is referenced but absent from the source.
    let mut expected = blob_digests(&src);
    expected.remove(&g.dangling.digest);
    assert_eq!(blob_digests(dst.root()), expected);
    assert_eq!(report.copied_blobs, expected.len() as u64);
    assert_eq!(report.present_blobs, 0);
    let copied_bytes: u64 = expected
        .iter()
        .map(|d| {
            fs::metadata(src.join(Digest::parse(d).unwrap().blob_path()))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(report.copied_bytes, copied_bytes);
    assert_eq!(report.missing_blobs, vec![g.foreign_layer.digest()]);

    // Independently of the store: the strong closure of index.json plus every referrer kind.
    let mut roots: Vec<&str> = g.tags.values().map(String::as_str).collect();
    roots.extend(g.untagged.iter().map(String::as_str));
    roots.extend(digests([
        &g.sbom_signature, // listed nowhere, subject = sbom
        &g.cosign_v3,      // listed nowhere, subject = image
        &g.index_referrer, // listed nowhere, an index with a subject
    ]));
    let closure: BTreeSet<String> = strong_closure(&src, &roots)
        .into_iter()
        .filter(|d| *d != g.foreign_layer.digest)
        .collect();
    assert_eq!(blob_digests(dst.root()), closure);
    for d in [
        &g.sbom,
        &g.sbom_signature,
        &g.artifact,
        &g.config_typed,
        &g.cosign_sig,
        &g.cosign_v3,
        &g.index_referrer,
        &g.fallback_index,
        &g.fallback_sbom,
        &g.fallback_sig,
        &g.docker_list_sig,
    ] {
        assert!(
            dst.manifest_info(&d.digest()).unwrap().is_some(),
            "referrer {} not imported",
            d.digest
        );
    }
    assert!(dst.blob_info(&g.dangling.digest()).unwrap().is_none());

    // Tags and untagged entries, with every field of the source's entries.
    let mut want_tags: Vec<String> = g.tags.keys().cloned().collect();
    let mut got_tags = report.tags.clone();
    want_tags.sort();
    got_tags.sort();
    assert_eq!(got_tags, want_tags);
    assert_eq!(report.untagged_entries, g.untagged.len() as u64);
    assert_eq!(tags(&dst), tags(&adopted));
    assert_eq!(untagged(&dst), untagged(&adopted));
    assert_eq!(entries(dst.root()), entries(&src));
    for (t, d) in &g.tags {
        assert_eq!(dst.resolve(t).unwrap().as_str(), d, "tag {t}");
    }

    // The index answers as the adopted store does.
    for m in g.manifests() {
        if *m == g.dangling {
            continue;
        }
        let d = m.digest();
        assert_eq!(
            dst.manifest_info(&d).unwrap(),
            adopted.manifest_info(&d).unwrap(),
            "{}",
            m.digest
        );
        assert_eq!(
            dst.children(&d).unwrap(),
            adopted.children(&d).unwrap(),
            "{}",
            m.digest
        );
    }
    let mut subjects: Vec<Digest> = g.manifests().iter().map(|d| d.digest()).collect();
    subjects.push(g.image_layer.digest());
    subjects.push(g.foreign_layer.digest());
    subjects.push(Digest::sha256(b"nothing refers to this"));
    for s in &subjects {
        for q in queries() {
            assert_eq!(
                referrers(&dst, s, &q),
                referrers(&adopted, s, &q),
                "referrers of {s} with {q:?}"
            );
        }
    }
    // The answers are the generator's, not merely equal to each other.
    for s in [&g.image, &g.sbom, &g.nested_amd64, &g.docker_list] {
        assert_eq!(
            referrers(&dst, &s.digest(), &ReferrersQuery::default()),
            g.expected_referrers(&s.digest),
            "referrers of {}",
            s.digest
        );
    }
    // Only the referrer of an absent subject differs: it was not imported.
    assert!(
        referrers(&dst, &g.dangling_subject, &ReferrersQuery::default()).is_empty(),
        "the dangling referrer was imported"
    );
    assert_eq!(
        referrers(&adopted, &g.dangling_subject, &ReferrersQuery::default()),
        g.expected_referrers(g.dangling_subject.as_str())
    );

    assert_all_verified(&dst, &src);

    // What the index holds survives a close and a rebuild from the layout alone.
    let stats = dst.stats().unwrap();
    let root = dst.root().to_path_buf();
    drop(dst);
    let rebuilt = Store::rebuild(&root, &Options::default()).unwrap();
    assert_eq!(rebuilt.stats().unwrap(), stats);
    for s in &subjects {
        assert_eq!(
            referrers(&rebuilt, s, &ReferrersQuery::default()),
            referrers(&adopted, s, &ReferrersQuery::default()),
            "referrers of {s} after rebuild"
        );
    }
}

#[test]
fn import_one_tag_brings_its_closure_and_referrers_only() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let g = generate(&src);
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Store::init(dst_dir.path(), &exact_entries()).unwrap();

    let report = dst.import(&src, &["v1".to_owned()]).unwrap();

    // The image, its direct referrers (subject field, cosign tag, unlisted cosign v3, index
    // referrer), the signature of its SBOM (transitive), and what they all hold.
    let expected = strong_closure(&src, &v1_roots(&g));
    assert_eq!(blob_digests(dst.root()), expected);
    assert_eq!(report.copied_blobs, expected.len() as u64);
    assert!(
        report.missing_blobs.is_empty(),
        "{:?}",
        report.missing_blobs
    );

    // Not the other images, nor the referrers of other images.
    for d in [
        &g.nested_outer,
        &g.nested_inner,
        &g.nested_amd64,
        &g.nested_arm64,
        &g.nested_config,
        &g.nested_layer,
        &g.bare,
        &g.bare_config,
        &g.docker_list,
        &g.docker_amd64,
        &g.docker_arm64,
        &g.docker_config,
        &g.docker_layer,
        &g.fallback_index,
        &g.fallback_sbom,
        &g.fallback_sig,
        &g.docker_list_sig,
        &g.dangling,
    ] {
        assert!(
            dst.blob_info(&d.digest()).unwrap().is_none(),
            "{} was imported",
            d.digest
        );
    }

    // The tag, the cosign tag that links to it, and the untagged oras entries of its referrers.
    let want_tags: BTreeSet<String> = ["v1".to_owned(), g.cosign_sig_tag.clone()].into();
    assert_eq!(
        report.tags.iter().cloned().collect::<BTreeSet<_>>(),
        want_tags
    );
    assert_eq!(tags(&dst), want_tags);
    let want_untagged: BTreeSet<String> = [&g.sbom, &g.artifact, &g.config_typed]
        .iter()
        .map(|d| d.digest.clone())
        .collect();
    assert_eq!(untagged(&dst), want_untagged);
    assert_eq!(report.untagged_entries, 3);
    let src_entries = entries(&src);
    let dst_entries = entries(dst.root());
    assert!(
        dst_entries.is_subset(&src_entries),
        "entries not copied verbatim: {:?}",
        dst_entries.difference(&src_entries).collect::<Vec<_>>()
    );

    // Referrers, direct and transitive.
    assert_eq!(
        referrers(&dst, &g.image.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.image.digest)
    );
    assert_eq!(
        referrers(&dst, &g.sbom.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.sbom.digest)
    );
    let transitive = referrers(
        &dst,
        &g.image.digest(),
        &ReferrersQuery {
            transitive: true,
            ..ReferrersQuery::default()
        },
    );
    let mut want = g.expected_referrers(&g.image.digest);
    want.extend(g.expected_referrers(&g.sbom.digest));
    assert_eq!(transitive, sorted(want));
    assert_all_verified(&dst, &src);
}

#[test]
fn import_one_tag_brings_its_fallback_index() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let g = generate(&src);
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Store::init(dst_dir.path(), &Options::default()).unwrap();

    let report = dst.import(&src, &["nested".to_owned()]).unwrap();

    let roots = digests([
        &g.nested_outer,
        &g.fallback_index,
        &g.fallback_sbom,
        &g.fallback_sig,
    ]);
    assert_eq!(blob_digests(dst.root()), strong_closure(&src, &roots));
    // The fallback tag links referrers to nested_amd64, which the image holds; the "bare" tag
    // names a manifest the image holds too, but it is a name, not a link.
    let want_tags: BTreeSet<String> = ["nested".to_owned(), g.fallback_tag.clone()].into();
    assert_eq!(
        report.tags.iter().cloned().collect::<BTreeSet<_>>(),
        want_tags
    );
    assert_eq!(tags(&dst), want_tags);
    assert!(untagged(&dst).is_empty());
    assert_eq!(
        dst.resolve(&g.fallback_tag).unwrap().as_str(),
        g.fallback_index.digest
    );
    assert_eq!(
        referrers(&dst, &g.nested_amd64.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.nested_amd64.digest)
    );
    for d in [&g.image, &g.docker_list, &g.sbom, &g.cosign_sig] {
        assert!(dst.blob_info(&d.digest()).unwrap().is_none());
    }
    assert_all_verified(&dst, &src);

    // A manifest list whose layer is absent from the source: recorded as missing, the rest
    // imported, with the untagged oras-style signature of the list.
    let report = dst.import(&src, &["docker".to_owned()]).unwrap();
    assert_eq!(report.missing_blobs, vec![g.foreign_layer.digest()]);
    assert_eq!(report.tags, vec!["docker".to_owned()]);
    assert_eq!(report.untagged_entries, 1);
    assert_eq!(
        untagged(&dst),
        [g.docker_list_sig.digest.clone()].into_iter().collect()
    );
    assert_eq!(
        referrers(&dst, &g.docker_list.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.docker_list.digest)
    );
    assert!(dst.blob_info(&g.foreign_layer.digest()).unwrap().is_none());
    assert_all_verified(&dst, &src);
}

#[test]
fn import_is_idempotent() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let g = generate(&src);
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Store::init(dst_dir.path(), &Options::default()).unwrap();

    let first = dst.import(&src, &[]).unwrap();
    assert!(first.copied_blobs > 0);
    let before = state(&dst);

    let second = dst.import(&src, &[]).unwrap();
    assert_eq!(second.copied_blobs, 0);
    assert_eq!(second.copied_bytes, 0);
    assert_eq!(second.present_blobs, first.copied_blobs);
    assert_eq!(second.missing_blobs, first.missing_blobs);
    assert_unchanged(&dst, &before);

    // Importing a single tag again is free too.
    let third = dst.import(&src, &["v1".to_owned()]).unwrap();
    assert_eq!(third.copied_blobs, 0);
    assert!(third.present_blobs > 0);
    assert_unchanged(&dst, &before);

    // And so is a fresh open after all that.
    let root = dst.root().to_path_buf();
    drop(dst);
    let dst = Store::open(&root, &Options::default()).unwrap();
    assert_eq!(dst.open_report().indexed_blobs, 0);
    assert!(!dst.open_report().recovered);
    assert_unchanged(&dst, &before);
    assert_eq!(
        referrers(&dst, &g.image.digest(), &ReferrersQuery::default()),
        g.expected_referrers(&g.image.digest)
    );
}

#[test]
fn import_of_a_corrupt_blob_fails_and_changes_nothing() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let g = generate(&src);

    // Corrupt (same length) the non-manifest blob with the greatest digest outside the closure
    // of "v1", so that the import stages many other blobs before it meets the bad one, and a
    // later import of "v1" alone does not reach it.
    let v1_closure = strong_closure(&src, &v1_roots(&g));
    let manifests: BTreeSet<String> = g.manifests().iter().map(|d| d.digest.clone()).collect();
    let victim = blob_digests(&src)
        .into_iter()
        .filter(|d| !manifests.contains(d) && !v1_closure.contains(d))
        .max()
        .unwrap();
    let victim = Digest::parse(&victim).unwrap();
    let path = src.join(victim.blob_path());
    let mut bytes = fs::read(&path).unwrap();
    for b in &mut bytes {
        *b = b.wrapping_add(1);
    }
    fs::write(&path, &bytes).unwrap();

    let dst_dir = tempfile::tempdir().unwrap();
    let dst = store_with_content(dst_dir.path());
    let before = state(&dst);

    let err = dst.import(&src, &[]).unwrap_err();
    match &err {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(expected, victim.as_str());
            assert_eq!(actual, &sha256_digest(&bytes));
        }
        e => panic!("expected a digest mismatch, got {e:?}"),
    }
    assert!(err.to_string().contains(victim.as_str()), "{err}");
    assert_unchanged(&dst, &before);
    assert!(dst.blob_info(&victim).unwrap().is_none());
    assert!(dst.blob_info(&g.image.digest()).unwrap().is_none());

    // Still nothing after a close and a fresh open (no half-import for recovery to find).
    let root = dst.root().to_path_buf();
    drop(dst);
    let dst = Store::open(&root, &Options::default()).unwrap();
    assert_eq!(dst.open_report().indexed_blobs, 0);
    assert_unchanged(&dst, &before);

    // An import that does not reach the bad blob still works.
    let report = dst.import(&src, &["v1".to_owned()]).unwrap();
    assert_eq!(report.copied_blobs, v1_closure.len() as u64);
    assert!(dst.blob_info(&g.image.digest()).unwrap().is_some());
    assert!(dst.blob_info(&victim).unwrap().is_none());
}

#[test]
fn import_of_a_corrupt_manifest_fails_and_changes_nothing() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let g = generate(&src);
    // The image manifest itself: the scan cannot parse it (its bytes do not hash to its name),
    // and the copy must still refuse it rather than store unverified content.
    let path = src.join(g.image.digest().blob_path());
    let mut bytes = fs::read(&path).unwrap();
    let i = bytes.iter().position(|&b| b == b'A').unwrap();
    bytes[i] = b'B';
    fs::write(&path, &bytes).unwrap();

    let dst_dir = tempfile::tempdir().unwrap();
    let dst = store_with_content(dst_dir.path());
    let before = state(&dst);
    let err = dst.import(&src, &["v1".to_owned()]).unwrap_err();
    assert!(
        matches!(err, Error::DigestMismatch { .. }),
        "expected a digest mismatch, got {err:?}"
    );
    assert_unchanged(&dst, &before);
}

#[test]
fn import_of_a_missing_tag_fails_and_changes_nothing() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    generate(&src);
    let src_before = snapshot(&src);
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = store_with_content(dst_dir.path());
    let before = state(&dst);

    let err = dst.import(&src, &["no-such-tag".to_owned()]).unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(what) if what.contains("no-such-tag")),
        "expected NotFound naming the tag, got {err:?}"
    );
    assert_unchanged(&dst, &before);

    // One good tag and one missing: still nothing.
    let err = dst
        .import(&src, &["v1".to_owned(), "no-such-tag".to_owned()])
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_unchanged(&dst, &before);
    assert_eq!(snapshot(&src), src_before);
}

#[test]
fn import_from_a_directory_that_is_not_a_layout_fails_and_changes_nothing() {
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = store_with_content(dst_dir.path());
    let before = state(&dst);
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("index.json"), b"{}").unwrap();
    let err = dst.import(src.path(), &[]).unwrap_err();
    assert!(
        matches!(err, Error::InvalidLayout { .. }),
        "expected InvalidLayout, got {err:?}"
    );
    assert_unchanged(&dst, &before);
    let err = dst
        .import(&src.path().join("does-not-exist"), &[])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidLayout { .. }), "{err:?}");
    assert_unchanged(&dst, &before);
}

/// A layout with one image whose layer is larger than the manifest size limit: the scan of the
/// source only stats such a file, so the copy is the only place its digest is checked.
fn big_layout(root: &Path) -> (Desc, Desc) {
    write_skeleton(root);
    let layer_bytes: Vec<u8> = (0..5u32 << 20).map(|i| (i % 251) as u8).collect();
    let layer = Desc::write(root, OCI_LAYER_GZIP, &layer_bytes);
    let config = Desc::write(
        root,
        OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux"}"#,
    );
    let image = Desc::write(
        root,
        OCI_MANIFEST,
        &manifest_json(config.json(), vec![layer.json()], None, None, &[]),
    );
    write_index_json(root, vec![entry(&image, Some("big"))]);
    (image, layer)
}

#[test]
fn import_verifies_blobs_larger_than_the_manifest_limit() {
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    let (image, layer) = big_layout(&src);

    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Store::init(dst_dir.path().join("ok"), &Options::default()).unwrap();
    let report = dst.import(&src, &["big".to_owned()]).unwrap();
    assert_eq!(report.copied_blobs, 3);
    assert_eq!(report.tags, vec!["big".to_owned()]);
    let info = dst.blob_info(&layer.digest()).unwrap().unwrap();
    assert!(info.verified, "the large layer was not verified");
    assert_eq!(info.size, layer.size);
    assert_all_verified(&dst, &src);
    assert_eq!(dst.resolve("big").unwrap(), image.digest());

    // The same layout with the large layer corrupted (same length).
    let path = src.join(layer.digest().blob_path());
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let dst = store_with_content(&dst_dir.path().join("bad"));
    let before = state(&dst);
    let err = dst.import(&src, &[]).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == layer.digest),
        "expected a digest mismatch on the layer, got {err:?}"
    );
    assert_unchanged(&dst, &before);
}

/// Options under which the destination's index.json lists exactly what the source's does: the
/// store would otherwise add an untagged entry for each subject-field referrer the source did
/// not list (`Options::list_referrers`, tested in tests/store.rs).
fn exact_entries() -> Options {
    Options {
        list_referrers: false,
        ..Options::default()
    }
}

/// An import puts every blob before a manifest that lists it: cut short by a crash, it leaves
/// no manifest whose content is missing (recovery would index such a manifest as it is).
#[test]
fn import_writes_children_before_the_manifests_that_list_them() {
    use std::sync::{Arc, Mutex};
    let src_dir = tempfile::tempdir().unwrap();
    let src = src_dir.path().join("src");
    generate(&src);
    let dst_dir = tempfile::tempdir().unwrap();
    let dst = Store::init(dst_dir.path(), &Options::default()).unwrap();
    let renamed: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = renamed.clone();
    let installed = ocistore::fault::install(
        dst_dir.path(),
        Arc::new(move |step, path| {
            if step == ocistore::fault::Step::Rename
                && let Some(name) = path.file_name()
                && path.parent().and_then(Path::file_name) == Some("sha256".as_ref())
            {
                seen.lock()
                    .unwrap()
                    .push(format!("sha256:{}", name.to_string_lossy()));
            }
            None
        }),
    );
    let report = dst.import(&src, &[]).unwrap();
    drop(installed);
    let order = renamed.lock().unwrap().clone();
    assert_eq!(order.len() as u64, report.copied_blobs, "{order:?}");
    let position = |d: &str| order.iter().position(|x| x == d);
    let mut manifests = 0;
    for (i, d) in order.iter().enumerate() {
        let below = strong_closure(dst.root(), &[d.as_str()]);
        manifests += usize::from(below.len() > 1);
        for c in below.iter().filter(|c| *c != d) {
            if let Some(j) = position(c) {
                assert!(
                    j < i,
                    "{d} (written {i}th) lists {c}, written after it ({j}th)"
                );
            }
        }
    }
    assert!(manifests >= 3, "only {manifests} manifests were imported");
}
